#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

Standard library only; the output is deterministic, so running it again changes nothing. The
files are small on purpose: valid inputs of several shapes and dtypes (what libFuzzer mutates
from) and a few malformed ones (each a rule of the parser). Crash reproducers are not written
here: they are added by hand as corpus/<target>/crash-<what> and are never deleted.

    python3 tests/fuzz/make_corpus.py
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(HERE, "corpus")

DTYPES = {  # safetensors name -> element size (the dtypes quanto::dtype has)
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E4M3FNUZ": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
    "F64": 8, "I64": 8, "U64": 8,
}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def safetensors(tensors, metadata=None, pad=True, raw_header=None, lead="", data_extra=b"", order=None):
    """tensors: list of (name, dtype, shape); data bytes are a counter pattern."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    entries = []
    for name, dtype, shape in tensors:
        n = numel(shape) * DTYPES[dtype]
        entries.append((name, {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + n]}))
        data += bytes((len(data) + i) * 37 % 251 for i in range(n))
    for name, e in (entries if order is None else [entries[i] for i in order]):
        header[name] = e
    text = raw_header if raw_header is not None else lead + json.dumps(header, separators=(",", ":"))
    h = text.encode("utf-8") if isinstance(text, str) else text
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data + data_extra


def with_header(header_text, data=b""):
    h = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    return struct.pack("<Q", len(h)) + h + data


def qmap(entries, extra=None):
    d = {}
    for name, w, a in entries:
        d[name] = {"weights": w, "activations": a}
        if extra:
            d[name].update(extra)
    return json.dumps(d, indent=4)


def write(target, name, content):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(content)


def safetensors_seeds():
    t = "fuzz_safetensors"
    shutil.copyfile(os.path.join(ROOT, "tests", "data", "io", "python_small.safetensors"),
                    os.path.join(CORPUS, t, "seed-python_small.safetensors"))
    write(t, "one_f32", safetensors([("weight", "F32", (2, 3))]))
    write(t, "every_dtype", safetensors([("t_" + d.lower(), d, (2,)) for d in DTYPES]))
    write(t, "scalar_and_empty", safetensors([("s", "F16", ()), ("z", "F32", (0, 4)), ("z2", "U8", (3, 0)),
                                              ("v", "I64", (1,))]))
    write(t, "empty_header", safetensors([]))
    write(t, "metadata", safetensors([("w", "BF16", (2, 2))],
                                     metadata={"format": "pt", "quanto": "qint4", "\u00e9\u20ac": "\ud83d\ude00",
                                               "esc": "a\"\\\n\t\u0001"}))
    write(t, "metadata_null", with_header('{"__metadata__":null,"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}',
                                          b"abc"))
    write(t, "whitespace", with_header(' \n\t{"w": {"dtype": "I16", "shape": [2], "data_offsets": [0, 4]}} \r\n ',
                                       b"\x01\x02\x03\x04"))
    write(t, "unknown_fields", with_header(
        '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[1,{"y":null}],"z":"s"}}', b"\0\0\x80\x3f"))
    write(t, "json_order", safetensors([("a", "F32", (2,)), ("b", "I8", (3,)), ("c", "F64", (1,))], order=[2, 0, 1]))
    write(t, "misaligned", safetensors([("w", "F32", (3,)), ("v", "F64", (1,))], pad=False))
    layers = []
    for i in range(2):
        p = "model.layers.%d." % i
        layers += [(p + "self_attn.q_proj.weight._data", "I8", (8, 8)),
                   (p + "self_attn.q_proj.weight._scale", "F32", (8, 1)),
                   (p + "self_attn.q_proj.input_scale", "F32", ()),
                   (p + "self_attn.q_proj.output_scale", "F32", ()),
                   (p + "mlp.down_proj.weight._data", "U8", (8, 4)),
                   (p + "mlp.down_proj.weight._shift", "BF16", (8, 2)),
                   (p + "mlp.down_proj.weight._scale", "BF16", (8, 2)),
                   (p + "input_layernorm.weight", "F16", (8,))]
    write(t, "quantized_layers", safetensors(layers, metadata={"format": "pt"}))
    # malformed: one rule each
    good = safetensors([("w", "F32", (2,))])
    write(t, "bad_short", b"\x08\0\0")
    write(t, "bad_n_huge", b"\xff" * 8 + b"{}")
    write(t, "bad_n_past_end", struct.pack("<Q", 64) + b"{}      ")
    write(t, "bad_missing_byte", good[:-1])
    write(t, "bad_trailing_byte", good + b"\0")
    write(t, "bad_gap", with_header('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                    '"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}', b"12345"))
    write(t, "bad_overlap", with_header('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                        '"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"123"))
    write(t, "bad_duplicate_name", with_header('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                               '"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}', b"12"))
    write(t, "bad_duplicate_field", with_header('{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                                b"1"))
    write(t, "bad_metadata_value", with_header('{"__metadata__":{"k":1}}'))
    write(t, "bad_offsets", with_header('{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0.5,2]}}', b"1"))
    write(t, "bad_dtype", with_header('{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]},'
                                      '"b":{"dtype":"u8","shape":[1],"data_offsets":[1,2]}}', b"12"))
    write(t, "bad_shape_overflow", with_header('{"a":{"dtype":"F64","shape":[4294967296,4294967296,16],'
                                               '"data_offsets":[0,0]}}'))
    write(t, "bad_end_before_begin", with_header('{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}}', b"12"))
    write(t, "bad_bom", with_header(b"\xef\xbb\xbf{}" + b"   "))
    write(t, "bad_nul_padding", with_header(b"{}\0\0\0\0\0\0"))
    write(t, "bad_not_object", with_header("[]      "))
    write(t, "bad_not_utf8", with_header(b'{"\xff":{}}'))
    write(t, "bad_deep", with_header('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + "[" * 80 +
                                     "]" * 80 + "}}", b"1"))


def qmap_seeds():
    t = "fuzz_qmap"
    for src in ("tests/data/nn/fp32_w_qint4_a_qfloat8_e4m3fn_qmap.json",
                "tests/data/models/llama-f32-qint8-a8/quanto_qmap.json"):
        shutil.copyfile(os.path.join(ROOT, src), os.path.join(CORPUS, t, "seed-" + src.replace("/", "_")))
    write(t, "empty", "{}")
    write(t, "every_qtype", qmap([("w." + w + "." + a, w, a) for w in
                                  ("none", "qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e5m2",
                                   "qfloat8_e4m3fnuz")
                                  for a in ("none", "qint8", "qfloat8")]))
    write(t, "names", qmap([("\u00e9\u20ac\ud83d\ude00", "qint4", "none"), ("", "qint8", "qint8"),
                            ("q\"\\\t\u0001\u007f", "none", "none"), ("a\u0000b", "qint2", "qfloat8_e5m2")]))
    write(t, "unknown_keys", qmap([("m", "qint4", "none")], extra={"x": [1, -2, 3.5e3, True, None, {"a": {"b": []}}],
                                                                   "y": {}}))
    write(t, "compact", '{"a":{"activations":"qint8","weights":"qfloat8"},"b":{"weights":"none","activations":"none"}}')
    write(t, "whitespace", ' \r\n\t{ "m" : { "weights" : "qint8" , "activations" : "none" } } \n')
    write(t, "bad_dup_module", '{"m":{"weights":"qint4","activations":"none"},"m":{"weights":"qint4","activations":"none"}}')
    write(t, "bad_dup_field", '{"m":{"weights":"qint4","weights":"qint8","activations":"none"}}')
    write(t, "bad_dup_deep", '{"m":{"weights":"qint4","activations":"none","x":[{"a":1,"a":2}]}}')
    write(t, "bad_qtype", '{"m":{"weights":"int4","activations":"none"}}')
    write(t, "bad_activations", '{"m":{"weights":"qint4","activations":"qint4"}}')
    write(t, "bad_number", '{"m":{"weights":4,"activations":"none"}}')
    write(t, "bad_missing", '{"m":{"weights":"qint4"}}')
    write(t, "bad_root", '["qint4"]')
    write(t, "bad_deep", '{"m":{"weights":"qint4","activations":"none","x":' + "[" * 70 + "]" * 70 + "}}")
    write(t, "bad_bom", b'\xef\xbb\xbf{}')
    write(t, "bad_nul", b'{}\0{}')
    write(t, "bad_utf8", b'{"\xc0\xaf":{}}')


def shard_index_seeds():
    t = "fuzz_shard_index"
    shutil.copyfile(os.path.join(ROOT, "tests/data/models/llama-f32-qint8-sharded/model.safetensors.index.json"),
                    os.path.join(CORPUS, t, "seed-llama_sharded_index.json"))

    def index(weight_map, metadata=None, **extra):
        d = {}
        if metadata is not None:
            d["metadata"] = metadata
        d["weight_map"] = weight_map
        d.update(extra)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    write(t, "small", index({"a.weight": "model-00001-of-00002.safetensors",
                             "b.weight": "model-00002-of-00002.safetensors"}, {"total_size": 1024}))
    write(t, "params_only", index({"w": "model.safetensors"}, {"total_parameters": 7}))
    write(t, "no_metadata", index({}))
    write(t, "unknown_keys", index({"w": "s.safetensors"}, {"total_size": 4, "format": "pt", "x": [1, {"y": None}]},
                                   other={"a": [True, False, 1.5]}))
    write(t, "names", index({"\u00e9\ud83d\ude00": "\u20ac.safetensors", "": "x", "a\u0000b": "model.safetensors"}))
    write(t, "compact", '{"weight_map":{"a":"b"},"metadata":{"total_size":0}}')
    write(t, "bad_dotdot", index({"w": "../x.safetensors"}))
    write(t, "bad_absolute", index({"w": "/etc/passwd"}))
    write(t, "bad_subpath", index({"w": "a/b.safetensors", "v": "a\\b"}))
    write(t, "bad_empty_name", index({"w": ""}))
    write(t, "bad_nul_name", index({"w": "a\u0000.safetensors"}))
    write(t, "bad_dot", index({"w": "."}))
    write(t, "bad_dup_tensor", '{"weight_map":{"w":"a","w":"b"}}')
    write(t, "bad_dup_deep", '{"weight_map":{},"x":{"y":[{"z":1,"z":1}]}}')
    write(t, "bad_weight_map_array", '{"weight_map":["a","b"]}')
    write(t, "bad_total_size", '{"metadata":{"total_size":-1},"weight_map":{}}')
    write(t, "bad_total_size_float", '{"metadata":{"total_size":1.5},"weight_map":{}}')
    write(t, "bad_total_size_object", '{"metadata":{"total_size":{}},"weight_map":{}}')
    write(t, "bad_no_weight_map", '{"metadata":{"total_size":1}}')
    write(t, "bad_shard_number", '{"weight_map":{"w":1}}')
    write(t, "bad_deep", '{"weight_map":{},"x":' + "[" * 70 + "]" * 70 + "}")
    write(t, "bad_bom", b'\xef\xbb\xbf{"weight_map":{}}')


def main():
    for target in ("fuzz_safetensors", "fuzz_qmap", "fuzz_shard_index"):
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    safetensors_seeds()
    qmap_seeds()
    shard_index_seeds()


if __name__ == "__main__":
    main()
