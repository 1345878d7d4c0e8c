#!/usr/bin/env python3
"""Writes tests/data/torch_threads.safetensors: what PyTorch's thread count does to HQQ's numerics.

Over 32768 elements (at::internal::GRAIN_SIZE) PyTorch's CPU kernels split their work between
`torch.get_num_threads()` threads. A full sum (HQQ's mean absolute error) then becomes a two-pass
reduction over per-thread chunks, whose result differs in the last bits from the one-thread sum;
and each chunk of an element-wise op runs its own vector loop, so float32 `pow` takes its scalar
path at every chunk's end. quanto-cpp reproduces both (`torch_sum_all(..., threads)`,
`hqq_optimizer::torch_threads`); this file records PyTorch's results for 1 to 8 threads:

- `sum.n<N>.t<T>`: `torch.sum` of N generated values (wide dynamic range) with T threads;
- `rows.<R>x<C>.t<T>` / `cols.<R>x<C>.t<T>`: `sum(dim=-1)` / `sum(dim=0)` (per-output reductions,
  which the thread count does not reorder on AVX2);
- `pow.n<N>.t<T>.index` / `.output`: `torch.pow(x, 0.7 - 1)` of N float32 values with T threads,
  kept at the indices around every chunk boundary (where the scalar tails are);
- `hqq.t<T>.shift` / `.data`: optimum-quanto's HqqOptimizer(iters=100) shift and packed codes for
  a 256x256 float32 weight, qint2, group size 128, with T threads: threads 2 and 3 stop at another
  iteration than 1 thread does, because their mean absolute errors differ by one ulp.

The inputs are not stored: both sides generate them from a SplitMix64 stream (`values` below and
the test's twin), exactly representable in float32. Deterministic; run on CPU.

    pip install torch optimum-quanto safetensors numpy && python3 tools/make_torch_thread_fixtures.py
"""
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

from optimum.quanto import HqqOptimizer, qint2
from optimum.quanto.tensor.grouped import group
from optimum.quanto.tensor.weights import quantize_weight

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "torch_threads.safetensors"
GRAIN = 32768


def values(seed, n, wide):
    """SplitMix64 of (seed, i): a 24-bit signed integer times 2^-(20 + e), e = 8 (narrow: uniform in
    [-2^-5, 2^-5)) or the stream's low 4 bits (wide). Exact in float32."""
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    k = (z >> np.uint64(40)).astype(np.int64) - (1 << 23)
    e = (z & np.uint64(15)).astype(np.int64) if wide else np.full(n, 8, dtype=np.int64)
    return torch.from_numpy(np.ldexp(k.astype(np.float64), -(20 + e)).astype(np.float32))


def chunk_size(n, threads):
    if threads <= 1 or n <= GRAIN:
        return n
    t = min(threads, -(-n // GRAIN))
    return -(-n // t)


tensors = {}
for n in (32768, 32769, 65543, 147456, 300001):
    x = values(n, n, wide=True)
    for t in (1, 2, 3, 4, 5, 8):
        torch.set_num_threads(t)
        tensors[f"sum.n{n}.t{t}"] = torch.sum(x).reshape(1)

for r, c in ((1152, 128), (300, 200), (64, 1000)):
    x = values(r * c + 7, r * c, wide=True).view(r, c)
    for t in (1, 2, 3):
        torch.set_num_threads(t)
        tensors[f"rows.{r}x{c}.t{t}"] = torch.sum(x, dim=-1)
        tensors[f"cols.{r}x{c}.t{t}"] = torch.sum(x, dim=0)

for n in (65539, 100003):
    x = values(n + 11, n, wide=False).abs()
    x[::29] = 0
    for t in (1, 2, 3):
        torch.set_num_threads(t)
        y = torch.pow(x, 0.7 - 1)
        c = chunk_size(n, t)
        idx = sorted({i for b in range(c, n + c, c) for i in range(max(0, b - 40), min(n, b + 8))})
        index = torch.tensor(idx, dtype=torch.int64)
        tensors[f"pow.n{n}.t{t}.index"] = index
        tensors[f"pow.n{n}.t{t}.output"] = y[index].contiguous()

w = values(18, 256 * 256, wide=False).view(256, 256)
shifts = {}
for t in (1, 2, 3):
    torch.set_num_threads(t)
    scale, shift = HqqOptimizer(iters=100)(group(w, axis=0, group_size=128), qint2, axis=0)
    q = quantize_weight(w, qtype=qint2, axis=0, scale=scale, shift=shift, group_size=128)
    tensors[f"hqq.t{t}.shift"] = shift.contiguous()
    tensors[f"hqq.t{t}.data"] = q._data._data.contiguous()
    shifts[t] = shift
assert not torch.equal(shifts[1], shifts[2]) and not torch.equal(shifts[1], shifts[3]), "the case no longer shows"

meta = {"torch_version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "parallel_backend": "OpenMP" if "OpenMP" in torch.__config__.parallel_info() else "other"}
save_file(tensors, str(out), metadata=meta)
print(f"wrote {out} ({out.stat().st_size} bytes, {len(tensors)} tensors, {meta['cpu_capability']}); "
      f"hqq shifts differing from 1 thread: t2 {(shifts[1] != shifts[2]).sum().item()}, "
      f"t3 {(shifts[1] != shifts[3]).sum().item()}")
