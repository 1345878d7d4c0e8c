#!/usr/bin/env python3
"""optimum-quanto's CPU QLinear forward against quanto-cpp's matmul, at the same shapes.

For each Llama-3-8B shape (W [n, k]), weight qtype (qint4 group 128, qint8 per row), thread count
(torch.set_num_threads / quanto-cpp's pool) and batch m in {1, 16}, this times

  * optimum-quanto: `quantize(model, weights=qtype, activations=None)`, `freeze(model)`, then the
    QLinear forward with bfloat16 and with float32 inputs (median of repeats after warm-up);
  * quanto-cpp: `bench_matmul` rows `<qtype>.exact.avx2` and `<qtype>.dynamic.avx2` (float32
    activations; median of its repetitions), run here with a matching --benchmark_filter, or read
    from a JSON given with --cpp-json.

Both sides read their weights from DRAM at m <= 16: bench_matmul rotates over copies totalling
>= 256 MiB, and this script does the same with clones of the frozen module's weight.

    python3 bench/compare_optimum_quanto.py [--quick] [--cpp-json PATH] [--bench PATH]

The ratio is optimum-quanto ms / quanto-cpp ms: above 1, quanto-cpp is faster.
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]  # (n, k): W is [n, k]
BATCHES = [1, 16]
QTYPES = {"qint4": "qint4_g128", "qint8": "qint8"}  # optimum-quanto name -> bench_matmul name


def cpp_filter(shapes, batches, threads):
    ns = "|".join(sorted({str(n) for n, _ in shapes}))
    ks = "|".join(sorted({str(k) for _, k in shapes}))
    ms = "|".join(str(m) for m in batches)
    ts = "|".join(str(t) for t in threads)
    return f"^(float32\\.baseline|(qint4_g128|qint8)\\.(exact|dynamic))\\.avx2/n:({ns})/k:({ks})/m:({ms})/t:({ts})/"


def run_cpp(args, shapes, threads):
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench_matmul_")
    os.close(fd)
    cmd = [args.bench, f"--benchmark_filter={cpp_filter(shapes, BATCHES, threads)}", f"--json={path}",
           f"--threads={','.join(str(t) for t in threads)}"]
    if args.quick:
        cmd += ["--quick", "--benchmark_min_time=0.05", "--benchmark_repetitions=2"]
    else:
        cmd += ["--benchmark_min_time=0.2", "--benchmark_repetitions=3"]
    print("running:", " ".join(cmd), flush=True)
    env = dict(os.environ)
    if args.quick:
        env.setdefault("QUANTO_BENCH_BW_MIB", "128")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL if not args.verbose else None)
    with open(path) as f:
        data = json.load(f)
    os.unlink(path)
    return data


def cpp_times(data):
    out = {}
    for r in data["rows"]:
        if r["isa"] != "avx2" or r.get("seconds") is None:
            continue
        out[(r["qtype"], r["policy"], r["n"], r["k"], r["m"], r["threads"])] = r["seconds"]
    return out


def tensor_bytes(t):
    import torch
    if type(t) in (torch.Tensor, torch.nn.Parameter):
        return t.numel() * t.element_size()
    names, _ = t.__tensor_flatten__()
    return sum(tensor_bytes(getattr(t, n)) for n in names)


def clone_qtensor(t):
    """A deep copy of a (possibly nested) quanto tensor subclass, with fresh storage."""
    import torch
    if type(t) in (torch.Tensor, torch.nn.Parameter):
        return t.detach().clone()
    names, meta = t.__tensor_flatten__()
    inner = {n: clone_qtensor(getattr(t, n)) for n in names}
    return type(t).__tensor_unflatten__(inner, meta, t.size(), t.stride())


def module_copies(qlinear, rotate_bytes):
    """The frozen QLinear plus shallow copies whose weights are clones, >= rotate_bytes in all."""
    import torch
    one = tensor_bytes(qlinear.weight)
    mods = [qlinear]
    while len(mods) * one < rotate_bytes or len(mods) < 2:
        c = copy.copy(qlinear)
        c._parameters = dict(qlinear._parameters)
        c._parameters["weight"] = torch.nn.Parameter(clone_qtensor(qlinear.weight), requires_grad=False)
        mods.append(c)
    return mods, one


def time_forward(mods, x, min_reps, max_reps, budget_s):
    import torch
    with torch.no_grad():
        for i in range(2):  # warm-up
            mods[i % len(mods)](x)
        times, spent, i = [], 0.0, 0
        while len(times) < max_reps and (len(times) < min_reps or spent < budget_s):
            mod = mods[i % len(mods)]
            t0 = time.perf_counter()
            mod(x)
            dt = time.perf_counter() - t0
            times.append(dt)
            spent += dt
            i += 1
    return statistics.median(times), len(times)


def run_optimum(args, shapes, threads):
    import torch
    from optimum.quanto import freeze, qint4, qint8, quantize

    qtypes = {"qint4": qint4, "qint8": qint8}
    dtypes = {"bfloat16": torch.bfloat16, "float32": torch.float32}
    rotate = args.rotate_mib << 20
    out, kinds = {}, {}
    for n, k in shapes:
        for qname, qt in qtypes.items():
            for dname, dt in dtypes.items():
                torch.manual_seed(0)
                model = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False))
                with torch.no_grad():
                    model[0].weight.normal_(0.0, 0.02)
                model = model.to(dt)
                t0 = time.perf_counter()
                quantize(model, weights=qt, activations=None)
                freeze(model)
                prep = time.perf_counter() - t0
                mods, one = module_copies(model[0], rotate)
                kinds[(qname, dname)] = type(model[0].weight).__name__
                for t in threads:
                    torch.set_num_threads(t)
                    for m in BATCHES:
                        x = torch.randn(m, k, dtype=dt)
                        slow = dname == "float32"  # the dequantizing path: ~0.1-1 s per call
                        med, reps = time_forward(mods, x, 3, 5 if slow else 30, 1.0 if args.quick else 2.0)
                        out[(qname, dname, n, k, m, t)] = med
                        print(f"  optimum-quanto {qname} {dname:8s} n={n:5d} k={k:5d} m={m:2d} t={t}: "
                              f"{med * 1e3:9.3f} ms (median of {reps}; {kinds[(qname, dname)]}, "
                              f"{len(mods)} copies of {one / 2**20:.1f} MiB; quantize+freeze {prep:.1f} s)",
                              flush=True)
                del mods, model
    return out, kinds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4096x4096 only, fewer repeats (development)")
    ap.add_argument("--cpp-json", help="read quanto-cpp times from this bench_matmul --json output instead of running it")
    ap.add_argument("--bench", default="build-release/bench/bench_matmul", help="the bench_matmul binary")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma separated (default 1,2)")
    ap.add_argument("--rotate-mib", type=int, default=256, help="weight bytes to rotate over (default 256)")
    ap.add_argument("--json", help="also write the table to this JSON file")
    ap.add_argument("--verbose", action="store_true", help="show bench_matmul's own output")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    shapes = SHAPES[:1] if args.quick else SHAPES
    start = time.perf_counter()

    if args.cpp_json:
        with open(args.cpp_json) as f:
            cpp = cpp_times(json.load(f))
    else:
        if not os.path.exists(args.bench):
            sys.exit(f"compare_optimum_quanto: {args.bench} not found (cmake --build build-release --target bench_matmul)")
        cpp = cpp_times(run_cpp(args, shapes, threads))
    print(f"quanto-cpp: {len(cpp)} rows ({time.perf_counter() - start:.0f} s)", flush=True)

    warnings.filterwarnings("ignore")
    opt, kinds = run_optimum(args, shapes, threads)

    def ms(v):
        return f"{v * 1e3:9.3f}" if v is not None else f"{'-':>9s}"

    def ratio(a, b):
        return f"{a / b:7.2f}" if a is not None and b is not None else f"{'-':>7s}"

    print()
    print("optimum-quanto: QLinear forward (weights only), input dtype as given; quanto-cpp: float32 x,")
    print("exact = float activations, dynamic = int8 activations per block; ratio = optimum ms / quanto-cpp ms")
    print()
    head = (f"{'n x k':>11s} {'m':>3s} {'qtype':>6s} {'t':>2s} {'x dtype':>8s} {'optimum ms':>10s} "
            f"{'cpp exact':>9s} {'ratio':>7s} {'cpp dyn':>9s} {'ratio':>7s} {'cpp fp32':>9s}  optimum-quanto path")
    print(head)
    print("-" * len(head))
    rows = []
    for n, k in shapes:
        for m in BATCHES:
            for qname, cname in QTYPES.items():
                for t in threads:
                    ex = cpp.get((cname, "exact", n, k, m, t))
                    dy = cpp.get((cname, "dynamic", n, k, m, t))
                    base = cpp.get(("float32", "baseline", n, k, m, t))
                    for dname in ("bfloat16", "float32"):
                        o = opt.get((qname, dname, n, k, m, t))
                        print(f"{f'{n}x{k}':>11s} {m:3d} {qname:>6s} {t:2d} {dname:>8s} {ms(o):>10s} {ms(ex)} "
                              f"{ratio(o, ex)} {ms(dy)} {ratio(o, dy)} {ms(base)}  {kinds.get((qname, dname), '')}")
                        rows.append({"n": n, "k": k, "m": m, "qtype": qname, "threads": t, "x_dtype": dname,
                                     "optimum_s": o, "cpp_exact_s": ex, "cpp_dynamic_s": dy, "cpp_fp32_baseline_s": base,
                                     "optimum_path": kinds.get((qname, dname), "")})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
