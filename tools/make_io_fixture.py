"""Writes tests/data/io/python_small.safetensors with the reference writer (pip package `safetensors`, 0.8.0).

tests/io/test_safetensors.cpp reads it back, checks every value, and checks that quanto's writer
reproduces it byte for byte. Needs only the standard library and safetensors (no torch/numpy).
"""
import ctypes
import struct
from pathlib import Path

from safetensors import TensorSpec, serialize

# name -> (torch-style dtype name, shape, little-endian bytes)
TENSORS = {
    "weight": ("float32", [2, 3], struct.pack("<6f", 0.0, 0.5, 1.0, 1.5, -2.0, 3.25)),
    "bias": ("bfloat16", [3], struct.pack("<3H", 0x3F80, 0x4000, 0xC040)),  # 1, 2, -3
    "scale": ("float16", [], struct.pack("<H", 0x3C00)),  # 1.0, rank 0
    "q": ("int8", [2, 2], struct.pack("<4b", -128, -1, 0, 127)),
    "f8": ("float8_e4m3fn", [4], bytes([0x38, 0x40, 0xB8, 0x7E])),
    "f8b": ("float8_e5m2", [2], bytes([0x3C, 0xC0])),
    "empty": ("uint8", [0, 3], b""),
    "mask": ("bool", [3], bytes([1, 0, 1])),
    "idx": ("int64", [2], struct.pack("<2q", -1, 1 << 40)),
}


def main() -> None:
    keep = []
    specs = {}
    for name, (dtype, shape, data) in TENSORS.items():
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        keep.append(buf)
        specs[name] = TensorSpec(dtype=dtype, shape=shape, data_ptr=ctypes.addressof(buf), data_len=len(data))
    out = serialize(specs, {"format": "pt"})  # one metadata key: the reference's map order is random
    (Path(__file__).resolve().parent.parent / "tests" / "data" / "io" / "python_small.safetensors").write_bytes(out)


if __name__ == "__main__":
    main()
