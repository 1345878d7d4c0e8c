#!/usr/bin/env python3
"""Writes tests/data/models: a tiny Llama model saved by transformers, and the folders that
optimum-quanto's QuantizedModelForCausalLM writes for it (the on-disk format the `quanto` CLI has
to reproduce), plus the logits quanto computes with each of them.

The float model is a `LlamaForCausalLM` built from a `LlamaConfig` (vocab 256, hidden 64,
intermediate 128, 2 layers, 4 attention heads, 2 key/value heads, tied embeddings) with
transformers' own random init (normal, std 0.02, from MODEL_SEED); the RMSNorm weights, which
transformers initializes to exactly 1, are then set to 1 + 0.1 * randn (from NORM_SEED) so that a
consumer that ignores them notices. It is saved with `save_pretrained` in float32 (llama-f32)
and, converted with `.to(torch.bfloat16)`, in bfloat16 (llama-bf16).

Every quantized case is

    model = LlamaForCausalLM.from_pretrained(<float folder>, dtype=...)
    qmodel = QuantizedModelForCausalLM.quantize(model, weights=..., activations=..., exclude=...)
    qmodel.save_pretrained(folder)

with the default optimizer (the float folder loaded back, as a user would: `.to(torch.bfloat16)`
also casts the rotary inv_freq buffer, which a loaded bf16 model keeps in float32). Two things are changed after quanto has written the folder:

  * the README.md that huggingface_hub's ModelHubMixin writes (a generic model card with no
    model-specific content) is deleted, after checking that it is that generic card;
  * nothing else. The sharded case needs one detour: ModelHubMixin.save_pretrained(dir, **kwargs)
    treats extra keyword arguments as push_to_hub arguments, so `qmodel.save_pretrained(dir,
    max_shard_size=...)` silently writes ONE file. The script therefore binds max_shard_size to
    the wrapped transformers model's save_pretrained for the duration of quanto's own
    save_pretrained call (quanto's _save_pretrained still runs: tie handling and quanto_qmap.json).

Each saved folder is reloaded with QuantizedModelForCausalLM.from_pretrained; the script checks
that the reloaded state dict and logits are bit-identical to the in-memory ones, and writes

    tests/data/models/logits.safetensors   input_ids  I64 [1, 12]   the fixed token sequence
                                           <case>     F32 [1, 12, 256] the logits of every model
                                                      (bf16 models' logits converted to F32, exact)
    tests/data/models/fixtures.json        the cases, the versions, and per case the group sizes,
                                           the TinyGemm modules (none here), the tie flag, sha256s

Logits are computed with `attn_implementation="eager"`, in eval mode, one torch thread.

Usage (from the repository root; packages as in tools/requirements-fixtures.txt):

    python3 tools/make_model_fixtures.py            # writes tests/data/models/*
    python3 tools/make_model_fixtures.py --out DIR  # writes elsewhere
    python3 tools/make_model_fixtures.py --check    # regenerates into a temporary folder and
                                                    # compares every file's sha256 with tests/data/models
"""
import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

torch.set_num_threads(1)

import importlib.metadata as importlib_metadata  # noqa: E402

import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from optimum.quanto import QModuleMixin, QuantizedModelForCausalLM, qtypes  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

try:
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(REPO_ROOT, "tests", "data", "models")
TOTAL_LIMIT_BYTES = 4_000_000
FOLDER_LIMIT_BYTES = 2_000_000

MODEL_SEED = 20240601  # torch.manual_seed before LlamaForCausalLM(config): transformers' init
NORM_SEED = 7  # generator of the RMSNorm weight perturbation
TOKEN_IDS = [1, 17, 42, 255, 0, 128, 64, 3, 200, 99, 7, 2]
SHARD_SIZE = "50KB"

CONFIG = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    tie_word_embeddings=True,
)

# name, base model, weights, activations, exclude, max_shard_size
CASES = [
    ("llama-f32-qint8", "llama-f32", "qint8", None, "lm_head", None),
    ("llama-f32-qint4", "llama-f32", "qint4", None, "lm_head", None),
    ("llama-f32-qint2", "llama-f32", "qint2", None, "lm_head", None),
    ("llama-f32-qfloat8", "llama-f32", "qfloat8", None, "lm_head", None),
    ("llama-f32-qint8-a8", "llama-f32", "qint8", "qint8", "lm_head", None),
    ("llama-bf16-qint4", "llama-bf16", "qint4", None, "lm_head", None),
    ("llama-f32-qint4-lmhead", "llama-f32", "qint4", None, None, None),
    ("llama-f32-qint8-sharded", "llama-f32", "qint8", None, "lm_head", SHARD_SIZE),
]

GENERIC_CARD_MARKERS = ("model_hub_mixin", "PytorchModelHubMixin", "[More Information Needed]")


def versions():
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optimum-quanto": importlib_metadata.version("optimum-quanto"),
        "safetensors": importlib_metadata.version("safetensors"),
        "accelerate": importlib_metadata.version("accelerate"),
        "huggingface_hub": importlib_metadata.version("huggingface_hub"),
        "python": sys.version.split()[0],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def float_model():
    torch.manual_seed(MODEL_SEED)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    g = torch.Generator().manual_seed(NORM_SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def load_float(folder, dtype):
    try:
        model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    if model.dtype != dtype:
        raise RuntimeError(f"{folder}: loaded as {model.dtype}, expected {dtype}")
    return model.eval()


def logits_of(model):
    """Logits with eager attention (the model's attention implementation is restored after)."""
    inner = getattr(model, "_wrapped", model)
    previous = inner.config._attn_implementation
    inner.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = inner(torch.tensor([TOKEN_IDS], dtype=torch.int64)).logits
    finally:
        inner.set_attn_implementation(previous)
    return out.detach().clone()


def raw_state_dict(model):
    """state_dict with every tensor as a plain, contiguous tensor (QTensors flattened the way
    quanto saves them: <name>._data, <name>._scale, ... )."""
    inner = getattr(model, "_wrapped", model)
    return {k: v.detach().clone().contiguous() for k, v in inner.state_dict().items()}


def bits_equal(a, b):
    """Bitwise equality of two tensors (NaNs compare equal when their bits do)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    ia = a.contiguous().reshape(-1).view(torch.uint8)
    ib = b.contiguous().reshape(-1).view(torch.uint8)
    return torch.equal(ia, ib)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def folder_files(folder):
    return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in folder_files(folder))


def drop_generic_card(folder):
    path = os.path.join(folder, "README.md")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not all(m in text for m in GENERIC_CARD_MARKERS):
        raise RuntimeError(f"{path} is not the generic ModelHubMixin card; not deleting it:\n{text}")
    os.remove(path)
    return "README.md"


def save_quantized(qmodel, folder, max_shard_size):
    if max_shard_size is None:
        qmodel.save_pretrained(folder)
    else:
        inner = qmodel._wrapped
        original = inner.save_pretrained

        def sharded(save_directory, **kwargs):
            kwargs.setdefault("max_shard_size", max_shard_size)
            return original(save_directory, **kwargs)

        object.__setattr__(inner, "save_pretrained", sharded)
        try:
            qmodel.save_pretrained(folder)
        finally:
            object.__delattr__(inner, "save_pretrained")
    return drop_generic_card(folder)


def module_info(qmodel):
    inner = qmodel._wrapped
    group_sizes = {}
    tinygemm = []
    for name, m in inner.named_modules():
        if isinstance(m, QModuleMixin) and m.weight_qtype is not None:
            group_sizes[name] = m.weight_group_size
            if "TinyGemm" in type(m.weight).__name__:
                tinygemm.append(name)
    return group_sizes, tinygemm


def index_check(folder):
    """For a sharded folder: the index's weight map must name every tensor of every shard, and
    its metadata is returned with the values it is compared against."""
    with open(os.path.join(folder, "model.safetensors.index.json"), encoding="utf-8") as f:
        index = json.load(f)
    weight_map = index["weight_map"]
    seen = {}
    nbytes = 0
    for shard in sorted(set(weight_map.values())):
        with safe_open(os.path.join(folder, shard), "pt") as f:
            for k in f.keys():
                t = f.get_tensor(k)
                seen[k] = shard
                nbytes += t.numel() * t.element_size()
    if seen != weight_map:
        raise RuntimeError(f"{folder}: index weight_map does not match the shards")
    return index["metadata"], nbytes, len(set(weight_map.values()))


def build(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for entry in os.listdir(out_dir):
        p = os.path.join(out_dir, entry)
        if os.path.isdir(p) and entry.startswith("llama-"):
            shutil.rmtree(p)
    model_f32 = float_model()
    made = {"llama-f32": model_f32, "llama-bf16": copy.deepcopy(model_f32).to(torch.bfloat16).eval()}
    logits = {"input_ids": torch.tensor([TOKEN_IDS], dtype=torch.int64)}
    manifest = {
        "description": "tests/data/models, written by tools/make_model_fixtures.py",
        "versions": versions(),
        "config": CONFIG,
        "model_seed": MODEL_SEED,
        "norm_seed": NORM_SEED,
        "token_ids": TOKEN_IDS,
        "attn_implementation": "eager",
        "models": [],
    }
    # Everything below starts from the saved float folders, loaded back with from_pretrained: that
    # is what a user (and tests/interop) quantizes. It matters for bf16: `.to(torch.bfloat16)`
    # also casts the rotary embedding's inv_freq buffer to bf16, while a model loaded from the
    # folder keeps it in float32, and the logits differ.
    bases = {}
    for name, model in made.items():
        folder = os.path.join(out_dir, name)
        model.save_pretrained(folder)
        model = load_float(folder, model.dtype)
        sd_made, sd_loaded = raw_state_dict(made[name]), raw_state_dict(model)
        if set(sd_made) != set(sd_loaded) or not all(bits_equal(sd_made[k], sd_loaded[k]) for k in sd_made):
            raise RuntimeError(f"{name}: the reloaded float state dict differs from the saved one")
        bases[name] = model
        logits[name] = logits_of(model).float()
        manifest["models"].append(
            {"name": name, "kind": "float", "dtype": str(model.dtype).replace("torch.", ""),
             "logits_dtype": str(model.dtype).replace("torch.", "")}
        )
    for name, base, weights, activations, exclude, shard in CASES:
        folder = os.path.join(out_dir, name)
        qmodel = QuantizedModelForCausalLM.quantize(
            load_float(os.path.join(out_dir, base), bases[base].dtype),
            weights=qtypes[weights],
            activations=None if activations is None else qtypes[activations],
            exclude=exclude,
        )
        group_sizes, tinygemm = module_info(qmodel)
        sd = raw_state_dict(qmodel)
        lg = logits_of(qmodel)
        dropped = save_quantized(qmodel, folder, shard)
        # Reload exactly as a user would, and check that nothing changed on the way.
        reloaded = QuantizedModelForCausalLM.from_pretrained(folder)
        sd2 = raw_state_dict(reloaded)
        if set(sd) != set(sd2) or not all(bits_equal(sd[k], sd2[k]) for k in sd):
            raise RuntimeError(f"{name}: the reloaded state dict differs from the saved one")
        lg2 = logits_of(reloaded)
        if not bits_equal(lg, lg2):
            raise RuntimeError(f"{name}: the reloaded model's logits differ")
        logits[name] = lg.float()
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            tie = json.load(f).get("tie_word_embeddings")
        entry = {
            "name": name,
            "kind": "quantized",
            "base": base,
            "weights": qtypes[weights].name,
            "activations": "none" if activations is None else qtypes[activations].name,
            "exclude": exclude,
            "optimizer": "default",
            "max_shard_size": shard,
            "dropped_files": [dropped] if dropped else [],
            "config_tie_word_embeddings": tie,
            "quantized_modules": len(group_sizes),
            "weight_group_sizes": sorted({str(v) for v in group_sizes.values()}),
            "tinygemm_modules": tinygemm,
            "logits_dtype": str(lg.dtype).replace("torch.", ""),
        }
        if shard is not None:
            meta, nbytes, nshards = index_check(folder)
            entry["shards"] = nshards
            entry["index_metadata"] = meta
            entry["sum_of_tensor_bytes"] = nbytes
        manifest["models"].append(entry)
    save_file(logits, os.path.join(out_dir, "logits.safetensors"), metadata={"token_ids": json.dumps(TOKEN_IDS)})
    # safetensors 0.8 creates its files with mode 0600; make everything readable like the rest.
    for rel in all_files(out_dir):
        os.chmod(os.path.join(out_dir, rel), 0o644)
    for entry in manifest["models"]:
        folder = os.path.join(out_dir, entry["name"])
        entry["files"] = {f: {"bytes": os.path.getsize(os.path.join(folder, f)), "sha256": sha256(os.path.join(folder, f))}
                          for f in folder_files(folder)}
    with open(os.path.join(out_dir, "fixtures.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    return manifest


def all_files(out_dir):
    out = []
    for root, _, files in os.walk(out_dir):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), out_dir))
    return sorted(out)


def summary(out_dir, manifest):
    print("versions:", ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()))
    total = 0
    for entry in manifest["models"]:
        folder = os.path.join(out_dir, entry["name"])
        size = folder_size(folder)
        total += size
        extra = ""
        if entry["kind"] == "quantized":
            extra = (f"w={entry['weights']} a={entry['activations']} exclude={entry['exclude']} "
                     f"gs={','.join(entry['weight_group_sizes'])} tie={entry['config_tie_word_embeddings']} "
                     f"tinygemm={len(entry['tinygemm_modules'])}")
            if entry.get("shards"):
                extra += f" shards={entry['shards']} index={entry['index_metadata']} bytes={entry['sum_of_tensor_bytes']}"
        print(f"  {entry['name']:<26} {size:>9,} B  {extra}")
        for f, info in entry["files"].items():
            print(f"      {f:<40} {info['bytes']:>9,} B  {info['sha256'][:16]}")
        if size > FOLDER_LIMIT_BYTES:
            raise RuntimeError(f"{folder} is {size} bytes, over {FOLDER_LIMIT_BYTES}")
    for f in ("logits.safetensors", "fixtures.json"):
        size = os.path.getsize(os.path.join(out_dir, f))
        total += size
        print(f"  {f:<26} {size:>9,} B")
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):
        total += os.path.getsize(readme)
    print(f"total: {total:,} bytes")
    if total > TOTAL_LIMIT_BYTES:
        raise RuntimeError(f"tests/data/models is {total} bytes, over {TOTAL_LIMIT_BYTES}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT_DIR, help="output folder (default: tests/data/models)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary folder and compare sha256 with --out")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(tmp)
            ref = [f for f in all_files(args.out) if f != "README.md"]
            new = all_files(tmp)
            bad = sorted(set(ref) ^ set(new))
            bad += [f for f in sorted(set(ref) & set(new))
                    if sha256(os.path.join(args.out, f)) != sha256(os.path.join(tmp, f))]
            for f in bad:
                print("DIFFERS:", f)
            print("check:", "OK" if not bad else f"{len(bad)} file(s) differ")
            return 1 if bad else 0
    manifest = build(args.out)
    summary(args.out, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
