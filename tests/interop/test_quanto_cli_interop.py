#!/usr/bin/env python3
"""Interop test: the `quanto` command-line tool against the real optimum-quanto.

    python3 test_quanto_cli_interop.py --quanto PATH_TO_QUANTO --models tests/data/models [--work DIR]

For every case it runs

    quanto quantize <models>/<float model> <work>/<case> --weights W [--activations A] [...]

and compares the folder it writes with what optimum-quanto writes for the same float model:

    ref = QuantizedModelForCausalLM.quantize(LlamaForCausalLM.from_pretrained(<float model>),
                                             weights=W, activations=A, exclude=...)
    ref.save_pretrained(<work>/<case>.ref)

Checks, per case (any failure makes the exit code 1):
  * the tool exits with 0;
  * files: every tensor the tool wrote (over all shards) is bit-identical to the tensor quanto
    wrote under the same name (same key set, dtype, shape and bytes: `_data`, `_scale`, `_shift`,
    `input_scale`, `output_scale`, the float weights);
  * quanto_qmap.json holds the same map as quanto's; config.json has the same
    `tie_word_embeddings` (false once lm_head is quantized) and `dtype`;
  * `QuantizedModelForCausalLM.from_pretrained(<work>/<case>)` loads the folder, and its state dict
    is bit-identical to quanto's in-memory quantized model;
  * the logits of both on a fixed token sequence (eager attention) are bit-identical (the table
    shows the max abs difference and 1 - cosine similarity);
  * sharded case: there are several shards, the index's weight_map names every tensor of every
    shard and nothing else, `total_size` is the sum of the tensors' bytes and `total_parameters`
    (if present) is transformers' `num_parameters()` of the model. Whether the tool splits the
    shards exactly as transformers does is printed, not checked.

A bf16 qint4 module that optimum-quanto keeps in the TinyGemm layout (group size 128 on CPU)
saves a shift that went through a lossy bf16 round trip; quanto-cpp writes the algorithmic
shift instead (a documented decision). For such modules the tool's `_shift` is compared with the
algorithmic shift, and the logits are not required to match. The fixtures in tests/data/models
have no such module (hidden size 64: no grouping).

Exit codes: 0 all cases pass, 1 a mismatch or an error, 77 skipped (a Python module is missing).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

SKIP = 77

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

for _module in ("torch", "transformers", "optimum.quanto", "safetensors", "accelerate"):
    try:
        __import__(_module)
    except Exception as exc:  # ImportError, or a broken install that fails while importing
        print(f"SKIPPED: {_module} ({type(exc).__name__}: {exc})")
        sys.exit(SKIP)

import torch  # noqa: E402
import transformers  # noqa: E402
from optimum.quanto import MaxOptimizer, QModuleMixin, QuantizedModelForCausalLM, quantize_weight, qtypes  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

try:
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

TOKEN_IDS = [1, 17, 42, 255, 0, 128, 64, 3, 200, 99, 7, 2]
DTYPES = {"llama-f32": torch.float32, "llama-bf16": torch.bfloat16}


class Case:
    def __init__(self, name, base, weights, activations=None, lm_head=False, max_shard_size=None):
        self.name = name
        self.base = base
        self.weights = weights
        self.activations = activations
        self.lm_head = lm_head  # quantize lm_head too (--no-default-exclude / exclude=None)
        self.max_shard_size = max_shard_size

    def cli_args(self, quanto, models, out):
        args = [quanto, "quantize", os.path.join(models, self.base), out, "--weights", self.weights]
        if self.activations is not None:
            args += ["--activations", self.activations]
        if self.lm_head:
            args += ["--no-default-exclude"]
        if self.max_shard_size is not None:
            args += ["--max-shard-size", self.max_shard_size]
        return args

    @property
    def exclude(self):
        return None if self.lm_head else "lm_head"


CASES = [
    Case("f32-qint8", "llama-f32", "qint8"),
    Case("f32-qint4", "llama-f32", "qint4"),
    Case("f32-qint2", "llama-f32", "qint2"),
    Case("f32-qfloat8", "llama-f32", "qfloat8"),
    Case("f32-qint8-a8", "llama-f32", "qint8", activations="qint8"),
    Case("bf16-qint4", "llama-bf16", "qint4"),
    Case("f32-qint4-lmhead", "llama-f32", "qint4", lm_head=True),
    Case("f32-qint8-sharded", "llama-f32", "qint8", max_shard_size="100KB"),
]


class Failure(Exception):
    pass


# ---- helpers ------------------------------------------------------------------------------------


def bits_equal(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def describe(t):
    return f"{str(t.dtype).replace('torch.', '')}{list(t.shape)}"


def read_folder_tensors(folder):
    """All tensors of a saved folder (single file or shards), read raw with safetensors, plus the
    name of the file each one came from."""
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors, where = {}, {}
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise Failure(f"missing {name}")
        with safe_open(path, "pt") as f:
            for k in f.keys():
                if k in tensors:
                    raise Failure(f"tensor {k} is in {where[k]} and in {name}")
                tensors[k] = f.get_tensor(k)
                where[k] = name
    return tensors, where


def read_json(path):
    if not os.path.exists(path):
        raise Failure(f"missing {os.path.basename(path)}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_float(folder, dtype):
    try:
        model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    return model.eval()


def logits_of(qmodel):
    model = getattr(qmodel, "_wrapped", qmodel)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    with torch.no_grad():
        return model(torch.tensor([TOKEN_IDS], dtype=torch.int64)).logits.detach().clone()


def state_dict_of(qmodel):
    model = getattr(qmodel, "_wrapped", qmodel)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def tinygemm_modules(qmodel):
    model = getattr(qmodel, "_wrapped", qmodel)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, QModuleMixin) and "TinyGemm" in type(m.weight).__name__}


def algorithmic_shift(float_weight, qtype, group_size):
    """The shift quanto's algorithm computes (plain layout, no TinyGemm round trip)."""
    scale, shift = MaxOptimizer()(float_weight, qtype=qtype, axis=0, group_size=group_size)
    q = quantize_weight(float_weight, qtype=qtype, axis=0, scale=scale, shift=shift, group_size=group_size,
                        optimized=False)
    return q._shift.detach().contiguous()


def compare_tensors(got, ref, what, errors, override=None):
    """got, ref: dict name -> tensor. override: name -> tensor that replaces ref[name]."""
    override = override or {}
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    for k in missing:
        errors.append(f"{what}: missing tensor {k}")
    for k in extra:
        errors.append(f"{what}: unexpected tensor {k}")
    same = 0
    common = sorted(set(ref) & set(got))
    for k in common:
        r = override.get(k, ref[k])
        g = got[k]
        if bits_equal(g, r):
            same += 1
        elif g.dtype != r.dtype or tuple(g.shape) != tuple(r.shape):
            errors.append(f"{what}: {k} is {describe(g)}, quanto has {describe(r)}")
        else:
            diff = (g.float() - r.float()).abs()
            n = int((g.contiguous().reshape(-1).view(torch.uint8) != r.contiguous().reshape(-1).view(torch.uint8)).sum())
            errors.append(f"{what}: {k} differs ({n} byte(s), max abs diff {diff.max().item():.3g})")
    return same, len(ref)


def logits_stats(a, b):
    a64, b64 = a.double().flatten(), b.double().flatten()
    if bits_equal(a, b):
        return 0.0, 0.0
    max_abs = (a64 - b64).abs().max().item() if a64.numel() else 0.0
    na, nb = a64.norm().item(), b64.norm().item()
    if na == 0.0 and nb == 0.0:
        one_minus_cos = 0.0
    elif na == 0.0 or nb == 0.0:
        one_minus_cos = 1.0
    else:
        one_minus_cos = 1.0 - (a64 @ b64).item() / (na * nb)
    return max_abs, one_minus_cos


# ---- one case -----------------------------------------------------------------------------------


def run_case(case, args, float_models):
    errors, notes = [], []
    row = {"case": case.name, "cli": "-", "tensors": "-", "bytes": "-", "loaded": "-", "max_abs": float("nan"),
           "one_minus_cos": float("nan"), "time": 0.0}
    out = os.path.join(args.work, case.name)
    ref_dir = os.path.join(args.work, case.name + ".ref")
    for d in (out, ref_dir):
        if os.path.exists(d):
            shutil.rmtree(d)

    # 1. the tool
    cmd = case.cli_args(args.quanto, args.models, out)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        errors.append(f"timed out after {args.timeout} s: {' '.join(cmd)}")
        return row, errors, notes
    row["time"] = time.perf_counter() - t0
    with open(os.path.join(args.work, case.name + ".log"), "w", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    row["cli"] = f"rc={proc.returncode}"
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-10:]
        errors.append(f"exit code {proc.returncode}: {' '.join(cmd)}\n      " + "\n      ".join(tail))
        return row, errors, notes

    # 2. optimum-quanto's own result, from the same float folder
    float_model = float_models[case.base]()
    ref = QuantizedModelForCausalLM.quantize(
        float_model,
        weights=qtypes[case.weights],
        activations=None if case.activations is None else qtypes[case.activations],
        exclude=case.exclude,
    )
    float_weights = float_models[case.base + ":weights"]
    ref_sd = state_dict_of(ref)
    ref_logits = logits_of(ref)
    num_parameters = ref._wrapped.num_parameters()
    save_reference(ref, ref_dir, case.max_shard_size)

    # TinyGemm modules: quanto saves a round-tripped shift, quanto-cpp the algorithmic one.
    override = {}
    tiny = tinygemm_modules(ref)
    for name, m in tiny.items():
        override[f"{name}.weight._shift"] = algorithmic_shift(float_weights[f"{name}.weight"], m.weight_qtype,
                                                              m.weight_group_size)
    if tiny:
        notes.append(f"TinyGemm layout in quanto for {len(tiny)} module(s): _shift compared with the algorithmic shift")

    # 3. the files
    try:
        got_files, where = read_folder_tensors(out)
    except Failure as exc:
        errors.append(f"files: {exc}")
        return row, errors, notes
    ref_files, ref_where = read_folder_tensors(ref_dir)
    same, total = compare_tensors(got_files, ref_files, "file", errors, override)
    row["tensors"] = f"{same}/{total}"

    try:
        qmap = read_json(os.path.join(out, "quanto_qmap.json"))
        if qmap != read_json(os.path.join(ref_dir, "quanto_qmap.json")):
            errors.append("quanto_qmap.json differs from quanto's")
        cfg = read_json(os.path.join(out, "config.json"))
        ref_cfg = read_json(os.path.join(ref_dir, "config.json"))
        for key in ("tie_word_embeddings", "dtype", "torch_dtype"):
            if cfg.get(key) != ref_cfg.get(key):
                errors.append(f"config.json: {key} is {cfg.get(key)!r}, quanto writes {ref_cfg.get(key)!r}")
        others = sorted(k for k in set(cfg) | set(ref_cfg)
                        if k not in ("transformers_version", "tie_word_embeddings", "dtype", "torch_dtype")
                        and cfg.get(k) != ref_cfg.get(k))
        if others:
            notes.append("config.json keys that differ from quanto's: " + ", ".join(others))
    except Failure as exc:
        errors.append(str(exc))

    # byte-for-byte comparison of the files (informational: JSON key order, for example, may differ)
    got_names = sorted(f for f in os.listdir(out) if os.path.isfile(os.path.join(out, f)))
    ref_names = sorted(f for f in os.listdir(ref_dir) if os.path.isfile(os.path.join(ref_dir, f)) and f != "README.md")
    not_identical = [f for f in sorted(set(got_names) & set(ref_names)) if not same_bytes(os.path.join(out, f), os.path.join(ref_dir, f))]
    only = sorted(set(got_names) ^ set(ref_names))
    row["bytes"] = f"{len(set(got_names) & set(ref_names)) - len(not_identical)}/{len(ref_names)}"
    if not_identical:
        notes.append("files not byte-identical to quanto's (contents compared above): " + ", ".join(not_identical))
    if only:
        notes.append("files in only one of the two folders (quanto's README.md model card ignored): " + ", ".join(only))

    if case.max_shard_size is not None:
        check_index(out, got_files, where, ref_where, num_parameters, case, errors, notes)

    # 4. load it with optimum-quanto, compare the state dict and the logits
    try:
        loaded = QuantizedModelForCausalLM.from_pretrained(out)
    except Exception as exc:  # the whole point is to see why
        errors.append(f"from_pretrained failed: {type(exc).__name__}: {exc}")
        row["loaded"] = "FAIL"
        return row, errors, notes
    row["loaded"] = "ok"
    loaded_sd = state_dict_of(loaded)
    if tiny:
        # both went through TinyGemm on load: compare everything else
        loaded_sd = {k: v for k, v in loaded_sd.items() if not any(k.startswith(n + ".weight.") for n in tiny)}
        ref_sd_cmp = {k: v for k, v in ref_sd.items() if not any(k.startswith(n + ".weight.") for n in tiny)}
    else:
        ref_sd_cmp = ref_sd
    loaded_errors = []
    compare_tensors(loaded_sd, ref_sd_cmp, "loaded", loaded_errors)
    errors.extend(loaded_errors)
    got_logits = logits_of(loaded)
    row["max_abs"], row["one_minus_cos"] = logits_stats(got_logits, ref_logits)
    if not bits_equal(got_logits, ref_logits):
        if tiny:
            notes.append("logits differ (expected with TinyGemm shifts)")
        else:
            errors.append(f"logits differ: max abs {row['max_abs']:.3g}, 1-cos {row['one_minus_cos']:.3g}")
    return row, errors, notes


def check_index(out, got_files, where, ref_where, num_parameters, case, errors, notes):
    index_path = os.path.join(out, "model.safetensors.index.json")
    if not os.path.exists(index_path):
        errors.append(f"--max-shard-size {case.max_shard_size}: no model.safetensors.index.json")
        return
    index = read_json(index_path)
    weight_map = index.get("weight_map", {})
    shards = sorted(set(weight_map.values()))
    if len(shards) < 2:
        errors.append(f"--max-shard-size {case.max_shard_size}: {len(shards)} shard(s), expected several")
    if os.path.exists(os.path.join(out, "model.safetensors")):
        errors.append("sharded output also has a model.safetensors")
    if weight_map != where:
        missing = sorted(set(where) - set(weight_map))
        wrong = sorted(k for k in set(where) & set(weight_map) if where[k] != weight_map[k])
        extra = sorted(set(weight_map) - set(where))
        errors.append(f"index weight_map: {len(missing)} tensor(s) missing, {len(wrong)} in the wrong file, "
                      f"{len(extra)} not in any shard")
    meta = index.get("metadata", {})
    nbytes = sum(t.numel() * t.element_size() for t in got_files.values())
    if meta.get("total_size") != nbytes:
        errors.append(f"index metadata total_size is {meta.get('total_size')!r}, the tensors hold {nbytes} bytes")
    if "total_parameters" in meta and meta["total_parameters"] != num_parameters:
        errors.append(f"index metadata total_parameters is {meta['total_parameters']!r}, "
                      f"transformers counts {num_parameters}")
    # transformers' own split of the same tensors at the same size (informational only)
    same_split = ref_where == weight_map
    notes.append(f"{len(shards)} shards, total_size {meta.get('total_size')}, "
                 f"total_parameters {meta.get('total_parameters', 'absent')}; split "
                 + ("identical to transformers'" if same_split else
                    f"differs from transformers' ({len(set(ref_where.values()))} shards)"))


def save_reference(ref, folder, max_shard_size):
    """quanto's save_pretrained. ModelHubMixin.save_pretrained(dir, **kwargs) takes extra keyword
    arguments as push_to_hub arguments, so max_shard_size is bound to the wrapped transformers
    model's save_pretrained while quanto's own save_pretrained runs."""
    if max_shard_size is None:
        ref.save_pretrained(folder)
        return
    inner = ref._wrapped
    original = inner.save_pretrained

    def sharded(save_directory, **kwargs):
        kwargs.setdefault("max_shard_size", max_shard_size)
        return original(save_directory, **kwargs)

    object.__setattr__(inner, "save_pretrained", sharded)
    try:
        ref.save_pretrained(folder)
    finally:
        object.__delattr__(inner, "save_pretrained")


# ---- main ---------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quanto", required=True, help="the quanto executable")
    parser.add_argument("--models", required=True, help="tests/data/models")
    parser.add_argument("--work", help="scratch folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--cases", help="comma-separated case names to run (default: all)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per quanto run (default 120)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    if not (os.path.isfile(args.quanto) and os.access(args.quanto, os.X_OK)):
        print(f"error: {args.quanto} is not an executable file")
        return 1
    for base in DTYPES:
        if not os.path.isfile(os.path.join(args.models, base, "config.json")):
            print(f"error: {os.path.join(args.models, base)} is not a saved model folder")
            return 1
    args.quanto = os.path.abspath(args.quanto)
    args.models = os.path.abspath(args.models)
    cases = CASES
    if args.cases:
        wanted = args.cases.split(",")
        unknown = sorted(set(wanted) - {c.name for c in CASES})
        if unknown:
            print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(c.name for c in CASES)}")
            return 1
        cases = [c for c in CASES if c.name in wanted]

    temporary = args.work is None
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="quanto_interop_"))
    os.makedirs(args.work, exist_ok=True)

    float_models = {}
    for base, dtype in DTYPES.items():
        folder = os.path.join(args.models, base)
        float_models[base] = (lambda folder=folder, dtype=dtype: load_float(folder, dtype))
        float_models[base + ":weights"] = {k: v.detach().clone() for k, v in load_float(folder, dtype).state_dict().items()}

    print(f"quanto: {args.quanto}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"optimum-quanto {__import__('importlib.metadata').metadata.version('optimum-quanto')}")
    print(f"work: {args.work}\n")
    header = (f"{'case':<20} {'cli':<7} {'time':>7} {'tensors':>8} {'same bytes':>10} {'load':>5} "
              f"{'logits max|d|':>14} {'1-cos':>10}  result")
    print(header)
    print("-" * len(header))
    failed = []
    details = []
    for case in cases:
        try:
            row, errors, notes = run_case(case, args, float_models)
        except Exception as exc:  # report and go on with the other cases
            row = {"case": case.name, "cli": "?", "tensors": "-", "bytes": "-", "loaded": "-", "max_abs": float("nan"),
                   "one_minus_cos": float("nan"), "time": 0.0}
            errors, notes = [f"{type(exc).__name__}: {exc}"], []
        result = "PASS" if not errors else "FAIL"
        if errors:
            failed.append(case.name)
        print(f"{row['case']:<20} {row['cli']:<7} {row['time']:>6.2f}s {row['tensors']:>8} {row['bytes']:>10} {row['loaded']:>5} "
              f"{row['max_abs']:>14.3g} {row['one_minus_cos']:>10.3g}  {result}", flush=True)
        details.append((case.name, errors, notes))

    for name, errors, notes in details:
        if not errors and not notes:
            continue
        print(f"\n{name}:")
        for e in errors[:20]:
            print(f"  ERROR {e}")
        if len(errors) > 20:
            print(f"  ... and {len(errors) - 20} more")
        for n in notes:
            print(f"  note: {n}")
    print()
    if failed:
        print(f"FAILED: {len(failed)} of {len(cases)} case(s): {', '.join(failed)} (logs in {args.work})")
        return 1
    print(f"PASSED: all {len(cases)} case(s)")
    if temporary:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
