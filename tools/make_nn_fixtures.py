#!/usr/bin/env python3
"""Writes tests/data/nn: whole-model fixtures from the real optimum-quanto, for
tests/nn/test_nn_fixtures.cpp.

The model is the MLP of optimum-quanto's own tests (test/quantize/test_quantize_mlp.py):

    input_layer  = Linear(32, H)
    mid_layer    = Linear(H, H)
    output_layer = Linear(H, 10)
    forward(x)   = softmax(output_layer(relu(mid_layer(relu(input_layer(x))))), dim=-1)

with H = 256 (mid_layer and output_layer have 256 inputs, so qint2/qint4 weights are grouped with
group size 128; input_layer's 32 inputs are below the grouping threshold) and, for one case,
H = 192 (group size 96).

For every case the script builds the float model from a fixed seed, runs optimum-quanto's
`quantize(model, weights=..., activations=..., optimizer=..., exclude=...)`, calibrates with
`Calibration(momentum=0.9)` over three fixed batches when activations are quantized, calls
`freeze(model)`, and writes

    tests/data/nn/<case>.safetensors       quant.<key>   model.state_dict() after freeze, as it is
                                           calib.0..2    the calibration batches, [4, 32]
                                           input         the test input, [4, 32]
                                           output        the quantized model's output on `input`
                                                         (dequantized when it is a QTensor)
                                           float_output  the float model's output on `input`
                                           reloaded_output  the output of a fresh float model
                                                         `requantize`d from quant.* and the map
                                           nostreamline.<module>.{input,output}_scale and
                                           nostreamline_output  (cases with activations) the scales
                                                         and output of the same run calibrated with
                                                         Calibration(momentum=0.9, streamline=False)
                                           algo.<key>    (bf16 qint4 only) see "TinyGemm" below
    tests/data/nn/<case>_qmap.json         json.dump(quantization_map(model), f, indent=4)

The float models themselves are shared between the cases that use them, to keep the fixtures
small (the H = 256 fp32 weights alone are 300 KB):

    tests/data/nn/mlp_<dtype>_h<H>.safetensors   float.<key>   the float model's state_dict()

and each case names its float model in its metadata (`float_model`). The case parameters, the
versions and torch's CPU capability (HQQ's sums follow its vector width) are in every file's
`__metadata__`.

Streamline: in optimum-quanto 0.2.7 with torch 2.15, `Calibration`'s streamline bookkeeping never
records a quantized activation (its `__torch_function__` tests `QTensor in types`, and `types` is
empty there), so when the root module's forward ends it removes the output-quantization hook of
every quantized child. From the second batch on, each module then calibrates its input scale
from the float input (an EMA of absmax / qmax) instead of adopting the previous module's output
scale, and the model keeps running without output quantization after calibration (`output`).
That removal is not saved: a reloaded model quantizes its outputs again (`reloaded_output`). The
metadata key `streamline_disabled_outputs` lists the modules whose hook was removed; the
`nostreamline.*` tensors are what quanto computes with every hook in place.

TinyGemm: on CPU, optimum-quanto stores a bf16 qint4 group-128 weight in the TinyGemm layout, and
converting it back for state_dict() recomputes the shift in bf16 (`8*scale - (8*scale - shift)`),
which is not always the shift quanto's algorithm computed (spec §3.7). quanto-cpp writes the
algorithmic shift, so for those modules the file also holds `algo.<module>.weight._shift`, the
shift of `quantize_weight(..., optimized=False)`, and the metadata key `tinygemm_modules` lists
them. (Linear(H, 10) cannot take that layout at all: quanto fails on CPU with "expect N to be
dividable by 16", so the bf16 case leaves output_layer unquantized with `exclude`.)

Usage (from the repository root; torch and optimum-quanto as in tools/requirements-fixtures.txt):

    python3 tools/make_nn_fixtures.py           # writes tests/data/nn/*
    python3 tools/make_nn_fixtures.py --check   # regenerates in memory and compares with the files

The output is deterministic for a given torch / optimum-quanto / CPU capability: fixed seeds,
one torch thread, and safetensors files written by the small writer below (the reference writer
orders `__metadata__` by hash, which changes from run to run).
"""
import argparse
import io
import json
import os
import struct
import sys
import warnings

import torch

warnings.filterwarnings("ignore")

import optimum.quanto as oq  # noqa: E402
from optimum.quanto import (  # noqa: E402
    Calibration,
    QModuleMixin,
    HqqOptimizer,
    MaxOptimizer,
    QTensor,
    freeze,
    qtypes,
    quantization_map,
    quantize,
    quantize_weight,
    requantize,
)
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(REPO_ROOT, "tests", "data", "nn")
SIZE_LIMIT_BYTES = 1_500_000

IN_FEATURES = 32
OUT_FEATURES = 10
BATCH = 4
MODEL_SEED = 1234  # torch.manual_seed before building the float model (PyTorch's default init)
DATA_SEED = 5678  # generator of the calibration batches and the test input

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# name, model dtype, hidden size, weights, activations, optimizer ("default" or "hqq"), exclude
CASES = [
    ("fp32_w_qint8", "fp32", 256, "qint8", "none", "default", None),
    ("fp32_w_qfloat8_e4m3fn", "fp32", 256, "qfloat8_e4m3fn", "none", "default", None),
    ("fp32_w_qint4_max", "fp32", 256, "qint4", "none", "default", None),
    ("fp32_w_qint4_hqq", "fp32", 256, "qint4", "none", "hqq", None),
    ("fp32_w_qint2_max", "fp32", 256, "qint2", "none", "default", None),
    ("fp32_w_qint8_a_qint8", "fp32", 256, "qint8", "qint8", "default", None),
    ("fp32_w_qint4_a_qfloat8_e4m3fn", "fp32", 256, "qint4", "qfloat8_e4m3fn", "default", None),
    ("bf16_w_qint4_max", "bf16", 256, "qint4", "none", "default", "output_layer"),
    ("fp32_h192_w_qint4_a_qint8", "fp32", 192, "qint4", "qint8", "default", None),
]


class MLP(torch.nn.Module):
    """optimum-quanto's test MLP."""

    def __init__(self, input_features, hidden_features, output_features):
        super().__init__()
        self.input_layer = torch.nn.Linear(input_features, hidden_features)
        self.mid_layer = torch.nn.Linear(hidden_features, hidden_features)
        self.output_layer = torch.nn.Linear(hidden_features, output_features)

    def forward(self, inputs):
        x = torch.nn.functional.relu(self.input_layer(inputs))
        x = torch.nn.functional.relu(self.mid_layer(x))
        return torch.nn.functional.softmax(self.output_layer(x), dim=-1)


def float_model(dtype_name, hidden):
    """The float model: PyTorch's default init in fp32 from MODEL_SEED, then converted."""
    torch.manual_seed(MODEL_SEED)
    model = MLP(IN_FEATURES, hidden, OUT_FEATURES)
    return model.to(DTYPES[dtype_name]).eval()


def data(dtype_name):
    """The three calibration batches and the test input (randn, fp32, then converted)."""
    g = torch.Generator().manual_seed(DATA_SEED)
    batches = [torch.randn(BATCH, IN_FEATURES, generator=g) for _ in range(3)]
    test_input = torch.randn(BATCH, IN_FEATURES, generator=g)
    dtype = DTYPES[dtype_name]
    return [b.to(dtype) for b in batches], test_input.to(dtype)


def plain(t):
    """A plain tensor: QTensor outputs (quantized activations) dequantized."""
    if isinstance(t, QTensor):
        t = t.dequantize()
    return t.detach().clone().contiguous()


def quantized_model(dtype_name, hidden, weights, activations, optimizer, exclude, batches, streamline=True):
    model = float_model(dtype_name, hidden)
    quantize(
        model,
        weights=qtypes[weights],
        activations=None if activations == "none" else qtypes[activations],
        optimizer=HqqOptimizer() if optimizer == "hqq" else None,
        exclude=exclude,
    )
    if activations != "none":
        calibration = Calibration(momentum=0.9) if streamline else Calibration(momentum=0.9, streamline=False)
        with torch.no_grad(), calibration:
            for b in batches:
                model(b)
    freeze(model)
    return model


def disabled_output_hooks(model):
    """The quantized modules with activations whose output quantization hook is gone (removed by
    Calibration's streamline step; `_quantize_hooks` keeps the removed handle)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, QModuleMixin) and m.activation_qtype is not None:
            handle = m._quantize_hooks.get("output")
            if handle is None or handle.id not in m._forward_hooks:
                out.append(name)
    return out


def reloaded_output(dtype_name, hidden, state_dict, qmap, test_input):
    """The output of a fresh float model requantized from the state dict (all hooks in place)."""
    model = float_model(dtype_name, hidden)
    requantize(model, state_dict, qmap)
    with torch.no_grad():
        return plain(model(test_input))


def tinygemm_algo_shifts(model, float_sd, weights):
    """For every module quanto stored in the TinyGemm layout: the algorithmic shift (plain layout),
    after checking that the codes and scales quanto saved are the algorithmic ones."""
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(w, QTensor) or "TinyGemm" not in type(w).__name__:
            continue
        fw = float_sd[name + ".weight"]
        gs = m.weight_group_size
        scale, shift = MaxOptimizer()(fw, qtype=qtypes[weights], axis=0, group_size=gs)
        q = quantize_weight(fw, qtype=qtypes[weights], axis=0, scale=scale, shift=shift, group_size=gs,
                            optimized=False)
        sd = {}
        q.save_to_state_dict(sd, "", False)
        saved = model.state_dict()
        for key in ("_data._data", "_scale"):
            assert torch.equal(sd[key], saved[f"{name}.weight.{key}"]), (name, key)
        out[f"{name}.weight._shift"] = sd["_shift"].clone()
    return out


# ---- a deterministic safetensors writer ---------------------------------------------------------

_ST_DTYPES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def serialize(tensors, metadata):
    """The safetensors bytes of `tensors` (in this order, no padding between them; `__metadata__`
    first, header padded with spaces to a multiple of 8)."""
    assert sys.byteorder == "little"
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def verify_file(path, tensors, metadata):
    """Reads a written file back with the safetensors library and compares everything."""
    back = load_file(path)
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata, path
    assert sorted(back) == sorted(tensors), path
    for name, t in tensors.items():
        b = back[name]
        assert b.dtype == t.dtype and b.shape == t.shape, (path, name)
        assert torch.equal(b.reshape(-1).view(torch.uint8), t.contiguous().reshape(-1).view(torch.uint8)), (path, name)


# ---- the cases ----------------------------------------------------------------------------------

def build(versions):
    """{file name: bytes} for every file of tests/data/nn, plus a summary per case."""
    files = {}
    summary = []
    float_files = {}
    for name, dtype_name, hidden, weights, activations, optimizer, exclude in CASES:
        fname = f"mlp_{dtype_name}_h{hidden}.safetensors"
        float_sd = {k: v.detach().clone() for k, v in float_model(dtype_name, hidden).state_dict().items()}
        if fname not in float_files:
            meta = {"dtype": dtype_name, "hidden": str(hidden), "in_features": str(IN_FEATURES),
                    "out_features": str(OUT_FEATURES), "model_seed": str(MODEL_SEED), **versions}
            tensors = {"float." + k: v for k, v in float_sd.items()}
            float_files[fname] = (tensors, meta)
            files[fname] = serialize(tensors, meta)

        batches, test_input = data(dtype_name)
        with torch.no_grad():
            float_output = plain(float_model(dtype_name, hidden)(test_input))
        model = quantized_model(dtype_name, hidden, weights, activations, optimizer, exclude, batches)
        with torch.no_grad():
            output = plain(model(test_input))
        qsd = model.state_dict()
        algo = tinygemm_algo_shifts(model, float_sd, weights)
        qmap = quantization_map(model)
        disabled = disabled_output_hooks(model)
        reloaded = reloaded_output(dtype_name, hidden, qsd, qmap, test_input)
        nostreamline = {}
        if activations != "none":
            other = quantized_model(dtype_name, hidden, weights, activations, optimizer, exclude, batches,
                                    streamline=False)
            assert not disabled_output_hooks(other)
            with torch.no_grad():
                nostreamline["_output"] = plain(other(test_input))
            osd = other.state_dict()
            for k, v in osd.items():
                if k.endswith("input_scale") or k.endswith("output_scale"):
                    nostreamline[k] = v.detach().clone()
                else:  # only the calibrated scales can depend on streamline
                    assert torch.equal(v, qsd[k]), k

        tensors = {"quant." + k: v.detach().clone() for k, v in qsd.items()}
        for i, b in enumerate(batches):
            tensors[f"calib.{i}"] = b
        tensors["input"] = test_input
        tensors["output"] = output
        tensors["float_output"] = float_output
        tensors["reloaded_output"] = reloaded
        for k, v in nostreamline.items():
            tensors["nostreamline_output" if k == "_output" else "nostreamline." + k] = v
        mismatches = {}
        for k, v in algo.items():
            tensors["algo." + k] = v
            mismatches[k] = int((v.view(torch.int16) != qsd[k].view(torch.int16)).sum())
        meta = {
            "case": name, "dtype": dtype_name, "hidden": str(hidden), "weights": weights,
            "activations": activations, "optimizer": optimizer, "exclude": exclude or "",
            "calibration": "Calibration(momentum=0.9) over calib.0, calib.1, calib.2" if activations != "none" else "",
            "float_model": fname, "tinygemm_modules": json.dumps(sorted(m[: -len(".weight._shift")] for m in algo)),
            "tinygemm_shift_mismatches": json.dumps(mismatches),
            "streamline_disabled_outputs": json.dumps(disabled), **versions,
        }
        files[name + ".safetensors"] = serialize(tensors, meta)
        text = io.StringIO()
        json.dump(qmap, text, indent=4)  # exactly what QuantizedModelForCausalLM.save_pretrained does
        files[name + "_qmap.json"] = text.getvalue().encode("utf-8")
        cos = torch.nn.functional.cosine_similarity(output.float().flatten(), float_output.float().flatten(), dim=0)
        scales = {k: float(v) for k, v in qsd.items() if k.endswith("_scale") and v.ndim == 0}
        summary.append((name, 1.0 - float(cos), mismatches, scales, tensors, meta))
    return files, summary, float_files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = parser.parse_args()

    torch.set_num_threads(1)
    versions = {
        "torch_version": torch.__version__,
        "quanto_version": oq.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(f"torch {versions['torch_version']}  optimum-quanto {versions['quanto_version']}  "
          f"cpu capability {versions['cpu_capability']}")
    files, summary, float_files = build(versions)

    if args.check:
        bad = 0
        for fname, raw in files.items():
            path = os.path.join(args.out_dir, fname)
            same = os.path.exists(path) and open(path, "rb").read() == raw
            print(f"{'same' if same else 'DIFFERS'}  {fname}")
            bad += not same
        sys.exit(1 if bad else 0)

    os.makedirs(args.out_dir, exist_ok=True)
    total = 0
    for fname, raw in files.items():
        path = os.path.join(args.out_dir, fname)
        with open(path, "wb") as f:
            f.write(raw)
        total += len(raw)
        print(f"{len(raw):>9,}  {fname}")
    for fname, (tensors, meta) in float_files.items():
        verify_file(os.path.join(args.out_dir, fname), tensors, meta)
    for name, one_minus_cos, mismatches, scales, tensors, meta in summary:
        verify_file(os.path.join(args.out_dir, name + ".safetensors"), tensors, meta)
        print(f"{name}: 1-cos(quantized, float output) {one_minus_cos:.3e}"
              + (f", TinyGemm shift mismatches {mismatches}" if mismatches else ""))
        calibrated = {k: v for k, v in scales.items() if v != 1.0}
        if calibrated:
            print("    calibrated scales: " + ", ".join(f"{k} {v:.6g}" for k, v in calibrated.items()))
            print(f"    output quantization removed by streamline: {meta['streamline_disabled_outputs']}")
            differ = [k for k in calibrated if not torch.equal(tensors["nostreamline." + k], tensors["quant." + k])]
            print("    scales that differ with streamline=False: " + (", ".join(
                f"{k} (relative {float(tensors['nostreamline.' + k] / tensors['quant.' + k] - 1):+.2e})"
                for k in differ) or "none"))
        r, o = tensors["reloaded_output"].float().flatten(), tensors["output"].float().flatten()
        print(f"    reloaded_output vs output: max abs diff {float((r - o).abs().max()):.3e}, "
              f"1-cos {1 - float(torch.nn.functional.cosine_similarity(r, o, dim=0)):.3e}")
    print(f"{total:>9,}  total")
    if total > SIZE_LIMIT_BYTES:
        sys.exit(f"the fixtures take {total} bytes, over the {SIZE_LIMIT_BYTES} limit")


if __name__ == "__main__":
    main()
