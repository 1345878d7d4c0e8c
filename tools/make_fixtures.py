#!/usr/bin/env python3
"""Generate bit-exact reference fixtures from the real optimum-quanto.

This script runs Hugging Face optimum-quanto (the Python reference implementation that
quanto-cpp must match bit for bit) on a fixed, deterministic set of small input tensors and
writes the inputs together with quanto's own outputs to safetensors files:

    tests/data/quanto_fp32.safetensors
    tests/data/quanto_fp16.safetensors
    tests/data/quanto_bf16.safetensors

One file per model dtype; all three files hold the same inputs (generated in fp32 with fixed
seeds, then converted with `.to(dtype)`) and the same list of cases.

For every case the file holds `<id>.scale`, `<id>.codes`, `<id>.dequant` and, for qint2/qint4,
`<id>.shift` and `<id>.packed`; the inputs are stored once as `input.<name>`. The safetensors
`__metadata__` holds a JSON list of the cases (key "cases") plus the torch/quanto versions and
the CPU capability torch dispatched to. tests/data/README.md documents the format in full.

Values are produced the way quanto's modules produce them, but with `optimized=False` so that
the plain algorithmic layouts (WeightQBytesTensor / WeightQBitsTensor / ActivationQBytesTensor)
are recorded, never a kernel-specific layout.

Usage:
    pip install -r tools/requirements-fixtures.txt
    python3 tools/make_fixtures.py            # writes tests/data/*.safetensors

The output is deterministic for a given torch / optimum-quanto version and CPU capability
(single-threaded torch, fixed seeds).
"""

import argparse
import collections
import inspect
import json
import os
import struct
import sys
import warnings

import numpy as np
import torch


warnings.filterwarnings("ignore")

import optimum.quanto as oq  # noqa: E402
from optimum.quanto import (  # noqa: E402
    AbsmaxOptimizer,
    HqqOptimizer,
    MaxOptimizer,
    absmax_scale,
    qfloat8_e4m3fn,
    qfloat8_e4m3fnuz,
    qfloat8_e5m2,
    qint2,
    qint4,
    qint8,
    quantize_activation,
    quantize_weight,
)
from optimum.quanto.tensor.grouped import group  # noqa: E402
from optimum.quanto.tensor.optimizers import hqq_optimizer as hqq_module  # noqa: E402
from optimum.quanto.tensor.optimizers.affine_optimizer import AffineOptimizer  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(REPO_ROOT, "tests", "data")
SIZE_LIMIT_BYTES = 1_800_000

QTYPES = {
    "qint2": qint2,
    "qint4": qint4,
    "qint8": qint8,
    "qfloat8_e4m3fn": qfloat8_e4m3fn,
    "qfloat8_e5m2": qfloat8_e5m2,
    "qfloat8_e4m3fnuz": qfloat8_e4m3fnuz,
}
FP8_QTYPES = ("qfloat8_e4m3fn", "qfloat8_e5m2", "qfloat8_e4m3fnuz")
BYTE_QTYPES = ("qint8",) + FP8_QTYPES
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Whether this optimum-quanto accepts the zero-point variant of the affine optimizers.
HAS_ZEROPOINT = "zeropoint" in inspect.signature(AffineOptimizer.__call__).parameters


# --------------------------------------------------------------------------------------------
# Inputs. Every input is generated in fp32 from its own seeded generator, so adding or removing
# one input never changes the others. The same fp32 tensor is converted to each model dtype.
# --------------------------------------------------------------------------------------------

def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(shape, seed, std=1.0):
    return torch.randn(shape, generator=_gen(seed), dtype=torch.float32) * std


def _uniform(shape, seed, lo, hi):
    return torch.rand(shape, generator=_gen(seed), dtype=torch.float32) * (hi - lo) + lo


def _permute_last(t, seed):
    """Shuffle the last dimension of each row with a fixed seed (keeps the value multiset)."""
    g = _gen(seed)
    rows = t.reshape(-1, t.shape[-1])
    out = torch.empty_like(rows)
    for r in range(rows.shape[0]):
        out[r] = rows[r][torch.randperm(rows.shape[1], generator=g)]
    return out.reshape(t.shape)


def _outliers(shape, seed):
    t = _randn(shape, seed)
    flat = t.reshape(-1)
    idx = torch.randperm(flat.numel(), generator=_gen(seed + 1))[:6]
    flat[idx] *= 50.0
    return t


def _zero_rows_and_constant_groups():
    """[6, 256] (gs 128 for qint2/qint4, so 12 groups): zero rows, constant rows and groups."""
    t = _randn((6, 256), 600)
    t[0] = 0.0  # all-zero row: absmax scale 0, affine scale 0 in both groups
    t[2] = 0.5  # constant non-zero row
    t[3, :128] = -1.25  # first group constant, second group random
    t[4, 128:] = 0.0  # second group all zero
    return t


def _zero_rows_small():
    """[3, 64] (ungrouped for qint2/qint4): one zero row, one constant row."""
    t = _randn((3, 64), 610)
    t[1] = 0.0
    t[2] = 3.0
    return t


def _int8_ramp():
    """[3, 255]: values k*step, exactly representable after absmax quantization to qint8.

    row 0: k = -127..127 in order, step 0.25 (scale = 0.25 exactly);
    row 1: the same multiset shuffled, step 0.5;
    row 2: ties (k + 0.5) * 0.25 for k = -127..126 plus 127*0.25 so the scale is still 0.25:
           exercises round-half-to-even.
    """
    k = torch.arange(-127, 128, dtype=torch.float32)
    row0 = k * 0.25
    row1 = _permute_last(k * 0.5, 620)
    ties = torch.cat([(torch.arange(-127, 127, dtype=torch.float32) + 0.5), torch.tensor([127.0])]) * 0.25
    row2 = _permute_last(ties, 621)
    return torch.stack([row0, row1, row2])


def _lowbit_ramp(levels, rows_spec, in_features, group_size, seed):
    """Rows made of exactly representable affine levels, each group containing its min and max.

    rows_spec: list of (offset, step, ties). Each group holds values (j + offset) * step for
    j in [0, levels), repeated and shuffled; with ties=True the interior values are moved to
    the midpoints (j + 0.5 + offset) * step so that (x + shift) / scale lands on k + 0.5.
    """
    assert in_features % group_size == 0 and group_size % levels == 0
    rows = []
    for r, (offset, step, ties) in enumerate(rows_spec):
        groups = []
        for gi in range(in_features // group_size):
            j = torch.arange(levels, dtype=torch.float32)
            vals = (j + offset) * step
            if ties:
                mids = (torch.arange(levels - 1, dtype=torch.float32) + 0.5 + offset) * step
                vals = torch.cat([vals[:1], vals[-1:], mids])
            reps = -(-group_size // vals.numel())
            g = vals.repeat(reps)[:group_size]
            groups.append(_permute_last(g, seed + 97 * r + gi))
        rows.append(torch.cat(groups))
    return torch.stack(rows)


def _fp8_grid(dtype, factor, seed):
    """[3, n]: every finite value of an fp8 format, times a power of two `factor`.

    row 0: the values sorted; row 1: shuffled; row 2: midpoints between consecutive positive
    values (RNE ties of the fp8 cast), with signs alternating, plus the maximum so that the
    per-row absmax scale is exactly `factor`.
    """
    v = torch.arange(256, dtype=torch.uint8).view(dtype).to(torch.float32)
    v = v[torch.isfinite(v)]
    v = torch.unique(v)  # sorted; merges +0 and -0
    n = v.numel()
    pos = v[v > 0]
    mids = (pos[:-1] + pos[1:]) / 2
    signs = torch.where(torch.arange(mids.numel()) % 2 == 0, 1.0, -1.0)
    mids = torch.cat([mids * signs, pos[-1:]])
    row2 = torch.zeros(n)
    m = min(n, mids.numel())
    row2[:m] = _permute_last(mids, seed + 1)[:m]
    row2[0] = pos[-1]  # keep the maximum even if the permutation pushed it past n
    return torch.stack([v, _permute_last(v, seed), row2]) * factor


# (input, qtype) -> rows whose dequantized values must equal the input exactly.
EXACT_ROWS = {
    ("ramp8bit3x255", "qint8"): [0, 1],
    ("ramp16lvl6x256", "qint4"): [0, 1, 2, 3],
    ("ramp4lvl4x160", "qint2"): [0, 1],
    ("grid_e4m3fn3x253", "qfloat8_e4m3fn"): [0, 1],
    ("grid_e5m2_3x247", "qfloat8_e5m2"): [0, 1],
    ("grid_e4m3fnuz3x255", "qfloat8_e4m3fnuz"): [0, 1],
}


def make_inputs():
    inputs = collections.OrderedDict()
    # Group-size branches (module rule: in > 128 tries 128, 96, 64, 32, else per-channel).
    inputs["randn4x256"] = _randn((4, 256), 100)  # gs 128
    inputs["randn4x160"] = _randn((4, 160), 101)  # gs 32
    inputs["randn4x192"] = _randn((4, 192), 102)  # gs 96
    inputs["randn4x320"] = _randn((4, 320), 103)  # gs 64
    inputs["randn5x200"] = _randn((5, 200), 104)  # in 200: no divisor -> None; odd out (packing tail)
    inputs["randn7x64"] = _randn((7, 64), 105)  # in <= 128 -> None; out 7 (packing tail)
    inputs["randn6x128"] = _randn((6, 128), 106)  # in == 128 -> None
    inputs["randn1x256"] = _randn((1, 256), 107)  # out 1, grouped (gs 128)
    inputs["randn1x96"] = _randn((1, 96), 108)  # out 1, ungrouped: axis becomes None
    inputs["conv8x4x3x3"] = _randn((8, 4, 3, 3), 109)  # in 36 -> None
    inputs["conv4x32x3x3"] = _randn((4, 32, 3, 3), 110)  # in 288 -> gs 96
    inputs["randn64x12"] = _randn((64, 12), 111)  # axis -1 cases
    # Distributions and edge cases.
    inputs["uniform8x64"] = _uniform((8, 64), 200, -1.0, 1.0)
    inputs["outliers4x256"] = _outliers((4, 256), 201)
    inputs["tiny4x192"] = _randn((4, 192), 202, std=1e-6)  # fp16 subnormal range
    inputs["large4x128"] = _uniform((4, 128), 203, -30000.0, 30000.0)  # finite in fp16, max-min < 65504
    inputs["zeros6x256"] = _zero_rows_and_constant_groups()
    inputs["zeros3x64"] = _zero_rows_small()
    inputs["ramp8bit3x255"] = _int8_ramp()
    inputs["ramp16lvl6x256"] = _lowbit_ramp(
        16,
        [(-8, 0.25, False), (-3, 0.5, False), (0, 0.125, False), (-15, 1.0, False), (-8, 0.25, True), (-5, 2.0, True)],
        256,
        128,
        700,
    )
    inputs["ramp4lvl4x160"] = _lowbit_ramp(
        4, [(-2, 0.25, False), (0, 0.5, False), (-3, 1.0, True), (-1, 0.125, True)], 160, 32, 710
    )
    inputs["grid_e4m3fn3x253"] = _fp8_grid(torch.float8_e4m3fn, 2.0**-4, 720)
    inputs["grid_e5m2_3x247"] = _fp8_grid(torch.float8_e5m2, 2.0**-4, 730)
    inputs["grid_e4m3fnuz3x255"] = _fp8_grid(torch.float8_e4m3fnuz, 2.0**-4, 740)
    inputs["act4x96"] = _randn((4, 96), 300, std=3.0)
    # HQQ: large enough that the optimizer iterates.
    inputs["hqq16x256"] = _randn((16, 256), 400)
    inputs["hqq8x320"] = _randn((8, 320), 401)
    return inputs


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

def module_group_size(shape):
    """quanto's QModuleMixin rule for qint2/qint4 weights (spec §3.1)."""
    out = shape[0]
    numel = 1
    for d in shape:
        numel *= d
    in_features = numel // out
    if in_features <= 128:
        return None
    gs = 128
    while in_features % gs != 0 and gs > 32:
        gs -= 32
    return gs if in_features % gs == 0 else None


_QSHORT = {
    "qint2": "qint2",
    "qint4": "qint4",
    "qint8": "qint8",
    "qfloat8_e4m3fn": "e4m3fn",
    "qfloat8_e5m2": "e5m2",
    "qfloat8_e4m3fnuz": "e4m3fnuz",
}
_OSHORT = {"absmax": "absmax", "max": "max", "max_zeropoint": "maxzp", "hqq": "hqq"}


def make_cases(inputs):
    cases = []
    ids = set()

    def add(kind, inp, qtype, optimizer=None, axis=0, group_size="module", suffix="", act_scale_div=None):
        shape = tuple(inputs[inp].shape)
        if kind == "activation":
            axis = None
            group_size = None
        elif qtype in BYTE_QTYPES:
            group_size = None
        elif group_size == "module":
            group_size = module_group_size(shape) if axis == 0 else None
        if kind == "activation":
            cid = f"a_{_QSHORT[qtype]}_{inp}{suffix}"
        else:
            ax = "" if axis == 0 else "_axm1"
            gs = "" if group_size is None or axis == 0 else f"_gs{group_size}"
            cid = f"w_{_QSHORT[qtype]}_{_OSHORT[optimizer]}{ax}{gs}_{inp}{suffix}"
        assert "." not in cid and cid not in ids, cid
        ids.add(cid)
        cases.append(
            {
                "id": cid,
                "kind": kind,
                "input": inp,
                "qtype": qtype,
                "optimizer": optimizer,
                "axis": axis,
                "group_size": group_size,
                "_act_scale_div": act_scale_div,
            }
        )

    # 8-bit weights, absmax, axis 0: every qtype on the common shapes and edge cases.
    for q in BYTE_QTYPES:
        for inp in (
            "randn4x256",
            "conv8x4x3x3",
            "randn1x96",
            "uniform8x64",
            "outliers4x256",
            "tiny4x192",
            "large4x128",
            "zeros6x256",
            "zeros3x64",
        ):
            add("weight", inp, q, "absmax")
    add("weight", "randn5x200", "qint8", "absmax")
    add("weight", "conv4x32x3x3", "qint8", "absmax")
    add("weight", "randn1x256", "qint8", "absmax")
    add("weight", "ramp8bit3x255", "qint8", "absmax")
    add("weight", "grid_e4m3fn3x253", "qfloat8_e4m3fn", "absmax")
    add("weight", "grid_e5m2_3x247", "qfloat8_e5m2", "absmax")
    add("weight", "grid_e4m3fnuz3x255", "qfloat8_e4m3fnuz", "absmax")
    # 8-bit weights, axis -1 (low-level API only).
    add("weight", "randn64x12", "qint8", "absmax", axis=-1)
    add("weight", "conv4x32x3x3", "qint8", "absmax", axis=-1)
    add("weight", "randn4x256", "qfloat8_e4m3fn", "absmax", axis=-1)
    add("weight", "randn64x12", "qfloat8_e5m2", "absmax", axis=-1)

    # qint4 / qint2 weights, MaxOptimizer, axis 0, module group size: every branch.
    for inp in (
        "randn4x256",
        "randn4x160",
        "randn4x192",
        "randn4x320",
        "randn5x200",
        "randn7x64",
        "randn6x128",
        "randn1x256",
        "randn1x96",
        "conv8x4x3x3",
        "conv4x32x3x3",
        "uniform8x64",
        "outliers4x256",
        "tiny4x192",
        "large4x128",
        "zeros6x256",
        "zeros3x64",
        "ramp16lvl6x256",
    ):
        add("weight", inp, "qint4", "max")
    for inp in (
        "randn4x256",
        "randn4x160",
        "randn4x192",
        "randn4x320",
        "randn5x200",
        "randn7x64",
        "randn6x128",
        "randn1x96",
        "conv8x4x3x3",
        "conv4x32x3x3",
        "outliers4x256",
        "zeros6x256",
        "ramp4lvl4x160",
    ):
        add("weight", inp, "qint2", "max")
    # MaxOptimizer, axis -1 (grouped along the output dimension, and ungrouped).
    add("weight", "randn64x12", "qint4", "max", axis=-1, group_size=32)
    add("weight", "randn64x12", "qint4", "max", axis=-1, group_size=None)
    add("weight", "randn64x12", "qint2", "max", axis=-1, group_size=64)
    # Zero-point variant (integer uint8 shift).
    if HAS_ZEROPOINT:
        for inp in ("randn4x256", "randn5x200", "conv4x32x3x3", "zeros6x256", "ramp16lvl6x256"):
            add("weight", inp, "qint4", "max_zeropoint")
        for inp in ("randn4x160", "randn7x64"):
            add("weight", inp, "qint2", "max_zeropoint")
    # HQQ (default parameters).
    for q in ("qint4", "qint2"):
        add("weight", "hqq16x256", q, "hqq")
        add("weight", "hqq8x320", q, "hqq")
    add("weight", "randn5x200", "qint4", "hqq")  # ungrouped
    add("weight", "conv4x32x3x3", "qint4", "hqq")  # 4-D, gs 96
    add("weight", "randn4x160", "qint2", "hqq")  # gs 32

    # Activations: per-tensor absmax scale, and a fixed scale that forces saturation.
    for q in BYTE_QTYPES:
        add("activation", "act4x96", q)
        add("activation", "act4x96", q, suffix="_sat", act_scale_div=4.0)
    add("activation", "ramp8bit3x255", "qint8")
    add("activation", "grid_e4m3fn3x253", "qfloat8_e4m3fn")
    add("activation", "large4x128", "qfloat8_e5m2")
    add("activation", "tiny4x192", "qint8")
    add("activation", "tiny4x192", "qfloat8_e4m3fn")
    return cases


# --------------------------------------------------------------------------------------------
# Running quanto
# --------------------------------------------------------------------------------------------

class HqqProbe:
    """Wraps the quantize_weight used by HqqOptimizer to observe its iterations (read-only)."""

    def __init__(self):
        self.original = hqq_module.quantize_weight
        self.errors = []
        self.base = None

    def __enter__(self):
        def wrapped(base, *args, **kwargs):
            qw = self.original(base, *args, **kwargs)
            self.errors.append(float(torch.abs(base - qw).mean()))
            return qw

        hqq_module.quantize_weight = wrapped
        return self

    def __exit__(self, *exc):
        hqq_module.quantize_weight = self.original
        return False

    def summary(self, max_iters):
        """(accepted iterations, stop reason, smallest relative margin of any accept/stop decision).

        The margin is |best_error - error| / best_error over every `mean_error < best_error`
        comparison the optimizer made; 0 means two errors compared exactly equal.
        """
        errs = self.errors
        best = errs[0]
        accepted = 0
        margins = []
        stopped = False
        for e in errs[1:]:
            margins.append(abs(best - e) / best if best else float("inf"))
            if e < best:
                best = e
                accepted += 1
            else:
                stopped = True
                break
        if stopped:
            reason = "no_improvement"
        else:
            reason = "max_iters" if accepted == max_iters else "?"
        return accepted, reason, min(margins) if margins else float("nan")


def zero_scale_codes(case, x, result):
    """For a case with a zero scale: (#NaN in dequant, codes where quanto computed 0/0, codes where x/0)."""
    scale = result["scale"]
    codes = result["codes"]
    q = case["qtype"]
    if q in ("qint2", "qint4"):
        gs = case["group_size"]
        base = x if gs is None else group(x, case["axis"], gs)
        shift = result["shift"]
        if shift.dtype.is_floating_point:
            num = base + shift
        else:
            num = base
        zero = (scale == 0).expand_as(num)
    else:
        num = x
        zero = (scale == 0).expand_as(num) if scale.ndim else (scale == 0).expand(num.shape)
    nan_codes = sorted(set(codes[zero & (num == 0)].reshape(-1).tolist()))
    inf_codes = sorted(set(codes[zero & (num != 0)].reshape(-1).tolist()))
    return int(torch.isnan(result["dequant"]).sum()), nan_codes, inf_codes


def check_exact(case, x, result):
    """Inputs built to be exactly representable must round-trip bit-exactly (sanity of the inputs)."""
    rows = EXACT_ROWS.get((case["input"], case["qtype"]))
    if rows is None or case["kind"] != "weight" or case["optimizer"] not in ("absmax", "max"):
        return
    for r in rows:
        assert _bits_equal(result["dequant"][r], x[r]), f"{case['id']}: row {r} is not exact"


def planar_pack(codes, bits):
    """Spec §3.6 restated in numpy: planar packing along dim 0."""
    c = codes.numpy().astype(np.uint8)
    vpi = 8 // bits
    n = c.shape[0]
    rows = -(-n // vpi)
    out = np.zeros((rows,) + c.shape[1:], dtype=np.uint8)
    for i in range(vpi):
        for r in range(rows):
            src = i * rows + r
            if src < n:
                out[r] |= (c[src] << (bits * i)).astype(np.uint8)
    return out


def _bits_equal(a, b):
    """Bitwise equality of two float tensors (NaN == NaN when the bits match)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[a.dtype]
    return torch.equal(a.contiguous().view(view), b.contiguous().view(view))


def run_case(case, x, dtype, hqq_log):
    q = QTYPES[case["qtype"]]
    axis = case["axis"]
    gs = case["group_size"]
    opt = case["optimizer"]
    out = {}

    if case["kind"] == "activation":
        scale = absmax_scale(x, qtype=q, axis=None)
        if case["_act_scale_div"] is not None:
            scale = scale / case["_act_scale_div"]
        qa = quantize_activation(x, qtype=q, scale=scale)
        assert type(qa).__name__ == "ActivationQBytesTensor", type(qa)
        assert qa._scale.ndim == 0 and qa._scale.dtype == dtype
        data = qa._data
        out["scale"] = qa._scale
        out["codes"] = data.view(torch.uint8) if q.is_floating_point else data
        out["dequant"] = qa.dequantize()
        nan_case = bool((qa._scale == 0).any())
    elif case["qtype"] in BYTE_QTYPES:
        scale = AbsmaxOptimizer()(x, qtype=q, axis=axis)
        qw = quantize_weight(x, qtype=q, axis=axis, scale=scale, optimized=False)
        assert type(qw).__name__ == "WeightQBytesTensor", type(qw)
        effective_axis = None if x.shape[axis] == 1 else axis
        assert qw.axis == effective_axis, (qw.axis, effective_axis)
        assert qw._data.dtype == q.dtype and qw._data.shape == x.shape
        assert qw._scale is scale or torch.equal(qw._scale, scale)
        expected_scale_shape = () if effective_axis is None else tuple(
            x.shape[d] if d == (axis % x.ndim) else 1 for d in range(x.ndim)
        )
        assert tuple(qw._scale.shape) == expected_scale_shape, (qw._scale.shape, expected_scale_shape)
        out["scale"] = qw._scale
        out["codes"] = qw._data.view(torch.uint8) if q.is_floating_point else qw._data
        out["dequant"] = qw.dequantize()
        nan_case = bool((qw._scale == 0).any())
    else:
        kwargs = {}
        if opt == "max":
            optimizer = MaxOptimizer()
        elif opt == "max_zeropoint":
            optimizer = MaxOptimizer()
            kwargs["zeropoint"] = True
        elif opt == "hqq":
            optimizer = HqqOptimizer()
        else:
            raise ValueError(opt)
        if opt == "hqq":
            with HqqProbe() as probe:
                scale, shift = optimizer(x, qtype=q, axis=axis, group_size=gs, **kwargs)
            hqq_log[case["id"]] = probe.summary(optimizer.iters)
        else:
            scale, shift = optimizer(x, qtype=q, axis=axis, group_size=gs, **kwargs)
        qw = quantize_weight(x, qtype=q, axis=axis, scale=scale, shift=shift, group_size=gs, optimized=False)
        assert type(qw).__name__ == "WeightQBitsTensor", type(qw)
        assert type(qw._data).__name__ == "PackedTensor"
        assert qw.axis == axis and qw._group_size == gs
        assert qw._scale.dtype == dtype
        if opt == "max_zeropoint":
            assert qw._shift.dtype == torch.uint8
        else:
            assert qw._shift.dtype == dtype
        codes = qw._data.unpack()
        packed = qw._data._data
        assert codes.dtype == torch.uint8 and packed.dtype == torch.uint8
        if gs is None:
            assert codes.shape == x.shape
        elif axis == 0:
            assert tuple(codes.shape) == (x.numel() // gs, gs)
        else:
            assert tuple(codes.shape) == (gs, x.numel() // gs)
        assert int(codes.max()) <= 2**q.bits - 1
        assert np.array_equal(planar_pack(codes, q.bits), packed.numpy()), "packing differs from spec §3.6"
        # Codes straight from the quantization op must match the unpacked PackedTensor.
        direct = torch.ops.quanto.quantize_affine(x, bits=q.bits, axis=axis, group_size=gs, scale=scale, shift=shift)
        assert torch.equal(direct, codes)
        out["scale"] = qw._scale
        out["shift"] = qw._shift
        out["codes"] = codes
        out["packed"] = packed
        out["dequant"] = qw.dequantize()
        nan_case = bool((qw._scale == 0).any())

    assert out["dequant"].shape == x.shape and out["dequant"].dtype == dtype
    assert out["scale"].dtype == dtype
    return {k: v.detach().contiguous().clone() for k, v in out.items()}, nan_case


def build_file(dtype_name, inputs, cases, versions):
    dtype = DTYPES[dtype_name]
    tensors = collections.OrderedDict()
    used_inputs = []
    for c in cases:
        if c["input"] not in used_inputs:
            used_inputs.append(c["input"])
    for name in used_inputs:
        x = inputs[name].to(dtype)
        assert torch.isfinite(x).all(), f"input {name} is not finite in {dtype_name}"
        tensors[f"input.{name}"] = x.contiguous()
    meta_cases = []
    hqq_log = {}
    observations = []
    for c in cases:
        x = tensors[f"input.{c['input']}"]
        result, nan_case = run_case(c, x, dtype, hqq_log)
        check_exact(c, x, result)
        for k, v in result.items():
            tensors[f"{c['id']}.{k}"] = v
        meta_cases.append({k: c[k] for k in ("id", "kind", "input", "qtype", "optimizer", "axis", "group_size")})
        meta_cases[-1]["nan_case"] = nan_case
        if nan_case:
            observations.append((c["id"],) + zero_scale_codes(c, x, result))
    metadata = {
        "cases": json.dumps(meta_cases, separators=(",", ":")),
        "torch_version": versions["torch"],
        "quanto_version": versions["quanto"],
        "cpu_capability": versions["cpu"],
        "dtype": dtype_name,
    }
    return tensors, metadata, hqq_log, observations


# safetensors' own writer emits the __metadata__ map in hash order, which changes from run to
# run; this small writer produces byte-identical files for identical content (tensors in
# insertion order, "__metadata__" first). The files are read back with safetensors to check.
_ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int8: "I8",
    torch.uint8: "U8",
}


def write_safetensors(path, tensors, metadata):
    assert sys.byteorder == "little"
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)
    # Read back with the real library and compare.
    back = load_file(path)
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata
    assert list(back) == list(tensors) or sorted(back) == sorted(tensors)
    for name, t in tensors.items():
        b = back[name]
        assert b.dtype == t.dtype and b.shape == t.shape, name
        assert torch.equal(b.reshape(-1).view(torch.uint8), t.contiguous().reshape(-1).view(torch.uint8)), name


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR, help="output directory (default: tests/data)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)

    versions = {
        "torch": torch.__version__,
        "quanto": oq.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    print(f"torch {versions['torch']}  optimum-quanto {versions['quanto']}  cpu capability {versions['cpu']}")
    if not HAS_ZEROPOINT:
        print("NOTE: AffineOptimizer.__call__ has no 'zeropoint' argument: max_zeropoint cases skipped")

    inputs = make_inputs()
    cases = make_cases(inputs)
    os.makedirs(args.out_dir, exist_ok=True)

    sizes = {}
    all_hqq = {}
    all_nan = {}
    for dtype_name in DTYPES:
        tensors, metadata, hqq_log, observations = build_file(dtype_name, inputs, cases, versions)
        path = os.path.join(args.out_dir, f"quanto_{dtype_name}.safetensors")
        write_safetensors(path, tensors, metadata)
        sizes[path] = os.path.getsize(path)
        all_hqq[dtype_name] = hqq_log
        all_nan[dtype_name] = observations

    # ---- summary ----
    counts = collections.Counter((c["kind"], c["qtype"], c["optimizer"] or "-") for c in cases)
    print(f"\n{len(inputs)} inputs, {len(cases)} cases per file")
    print(f"{'kind':<11}{'qtype':<18}{'optimizer':<15}{'cases':>6}")
    for (kind, q, o), n in sorted(counts.items()):
        print(f"{kind:<11}{q:<18}{o:<15}{n:>6}")
    gsc = collections.Counter(
        (c["qtype"], c["axis"], c["group_size"]) for c in cases if c["qtype"] in ("qint2", "qint4")
    )
    print("\nlow-bit (qtype, axis, group_size) coverage:", dict(sorted(gsc.items(), key=str)))
    print("\nHQQ (accepted iterations, stop reason, smallest relative margin of any accept/stop comparison):")
    for dtype_name, log in all_hqq.items():
        for cid, (acc, reason, margin) in log.items():
            print(f"  {dtype_name:<5}{cid:<36} accepted={acc:<3} stop={reason:<15} margin={margin:.3e}")
    print("\nCases with a zero scale (nan_case): NaNs in dequant; codes where quanto computed 0/0; codes where x/0")
    for dtype_name, obs in all_nan.items():
        for cid, nnan, nan_codes, inf_codes in obs:
            print(f"  {dtype_name:<5}{cid:<40} nan_in_dequant={nnan:<5} codes(0/0)={nan_codes} codes(x/0)={inf_codes}")
    total = 0
    print("\nfile sizes:")
    for path, size in sizes.items():
        total += size
        print(f"  {os.path.relpath(path, REPO_ROOT):<40}{size:>10} bytes")
    print(f"  {'total':<40}{total:>10} bytes (limit {SIZE_LIMIT_BYTES})")
    if total >= SIZE_LIMIT_BYTES:
        print("ERROR: fixtures exceed the size limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
