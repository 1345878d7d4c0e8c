#!/usr/bin/env python3
"""Writes tests/data/torch_ops.safetensors: inputs and PyTorch's own CPU results for the two ops
whose bits HQQ depends on beyond plain arithmetic: float32 sums and `pow`.

HQQ's shifts are means, and a float sum depends on the order of its additions. quanto-cpp adds in
the order of PyTorch's CPU cascade summation (include/quanto/quantize/torch_sum.hpp); this file
pins that order down for row sums (dim=-1), column sums (dim=0) and full sums over lengths that
reach each branch: shorter than a vector, vector tails, the four accumulators, and the level
cascade of long rows. `torch.pow(t, 0.7 - 1)` (HQQ's call) is recorded for float32, float16 and
bfloat16 tensors whose sizes leave a remainder after PyTorch's vectorized loop, where the
leftover elements take a different (scalar) path. Run with one thread, as make_fixtures.py.

    pip install torch safetensors && python3 tools/make_torch_op_fixtures.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)
out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "torch_ops.safetensors"
tensors, cases = {}, []
gen = torch.Generator().manual_seed(1234)


def values(rows, cols):
    # wide dynamic range so that the order of additions shows in the last bits
    x = torch.randn(rows, cols, generator=gen) * torch.exp(torch.randn(rows, cols, generator=gen) * 3)
    return x.float().contiguous()


shapes = [(3, 1), (2, 5), (4, 8), (3, 13), (2, 31), (5, 64), (3, 100), (2, 128), (2, 257),
          (2, 1000), (1, 4099), (1, 20000), (7, 3), (37, 9), (300, 4), (129, 40), (64, 17), (1000, 2)]
for i, (r, c) in enumerate(shapes):
    name = f"s{i}_{r}x{c}"
    x = values(r, c)
    tensors[f"{name}.input"] = x
    tensors[f"{name}.rows"] = torch.sum(x, dim=-1)
    tensors[f"{name}.cols"] = torch.sum(x, dim=0)
    tensors[f"{name}.all"] = torch.sum(x)
    cases.append(name)

pow_cases = []
for n in (77, 1000):
    for dt, tag in ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        # |errors| as HQQ sees them: small magnitudes, a few exact zeros
        x = (torch.rand(n, generator=gen) * 0.05).to(dt)
        x[::29] = 0
        name = f"pow_{tag}_{n}"
        tensors[f"{name}.input"] = x
        tensors[f"{name}.output"] = torch.pow(x, 0.7 - 1)
        pow_cases.append(name)

meta = {"cases": json.dumps(cases), "pow_cases": json.dumps(pow_cases), "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability()}
save_file(tensors, str(out), metadata=meta)
print(f"wrote {out} ({out.stat().st_size} bytes, {len(cases)} sum and {len(pow_cases)} pow cases, {meta['cpu_capability']})")
