#!/usr/bin/env python3
"""all-MiniLM-L6-v2 quantized with optimum-quanto: accuracy, size and speed, per configuration.

The Python side of examples/03_minilm: the C++ example prints and writes the same table (same
JSON schema) for quanto-cpp, and tools/minilm_report.py puts the two side by side.

For each configuration (name: weights, activations, optimizer)

    f32     float32, not quantized          w4max   qint4,   none,    MaxOptimizer
    w8      qint8,   none                   w4hqq   qint4,   none,    HqqOptimizer
    w8a8    qint8,   qint8                  w2hqq   qint2,   none,    HqqOptimizer
    fp8     qfloat8, none                   w8fp8a  qfloat8, qfloat8
(qfloat8 is quanto's qfloat8_e4m3fn; 8-bit weights use quanto's default AbsmaxOptimizer)

this script
    1. copies the float model (transformers AutoModel of models/all-MiniLM-L6-v2: a BertModel,
       float32, eval mode, quanto's own defaults for everything), runs
       `optimum.quanto.quantize(model, weights=..., activations=..., optimizer=...)` on it
       (every nn.Linear, the pooler's too; with activations also every nn.LayerNorm); when
       activations are quantized, runs the calibration sentences through it one at a time
       (unpadded, file order) inside `optimum.quanto.Calibration()` (default momentum 0.9,
       streamline on); then `freeze(model)`. All under torch.no_grad().
    2. computes sentence embeddings as sentence-transformers does (mean of the last hidden
       state over the attention mask, then L2 normalisation), each sentence alone (batch 1,
       its own length, no padding), for all N sentences of examples/03_minilm/data/sentences.txt;
    3. reports
         cosine_mean, cosine_min  cosine between each sentence's embedding and the float32 one
         top1_agreement           % of sentences whose nearest neighbour (cosine, itself
                                  excluded, among the N) is the same as with float32 embeddings
         model_bytes              sum of the bytes of the tensors in model.state_dict() after
                                  freeze, i.e. as quanto serialises them (quantized weights as
                                  weight._data / _scale / _shift, everything else as is); the
                                  float32 word embeddings (30522 x 384, 46.9 MB) are most of it
         linear_weight_bytes      (extra) the same for the nn.Linear weights alone
         sps_batch1               sentences/s, each sentence alone (its own length), over the
                                  first `speed_sentences` sentences (--speed-sentences, 64)
         sps_batch32              sentences/s, padded batches of 32 in file order, over the
                                  first ceil(64 / 32) = 2 batches (`speed_sentences_batch32`)
       Speed: forward + pooling + normalisation from ids tokenized beforehand (tokenization is
       not timed), torch.set_num_threads(--threads, default 2), the median of --passes
       (default 3) timed passes. Warm-up matters: the first forward at each new sequence length
       is many times slower, so the untimed accuracy pass (every sentence) comes first, and one
       untimed pass over the timed batches of 32. Only a subset is timed because quanto's
       slowest configurations (w8a8: torch._int_mm on CPU) would take minutes per pass.

Output: a table on stdout; --json PATH writes

    {"tool": "optimum-quanto", "model": ..., "machine": {"cpu": ..., "logical_cpus": ...},
     "versions": {...}, "threads": 2, "passes": 3, "n_sentences": N, "n_calibration": 8,
     "speed_sentences": K, "speed_sentences_batch32": N, "timing": "...",
     "configs": [{"config", "weights", "activations", "optimizer", "cosine_mean", "cosine_min",
                  "top1_agreement", "model_bytes", "sps_batch1", "sps_batch32", "threads", ...}],
     "total_seconds": ...}

(weights / activations: quanto qtype names or null; optimizer: "absmax" | "max" | "hqq" | null.)
--save-weights DIR writes DIR/<config>/model.safetensors (safetensors.torch.save_file of the
frozen model's state_dict) and DIR/<config>/quanto_qmap.json (optimum.quanto.quantization_map),
quanto's documented serialisation, for every quantized config; --embeddings DIR writes
DIR/<config>.safetensors holding "embeddings" float32 [N, 384].

How to run (from the repository root, after tools/fetch_minilm.py)
    python3 bench/minilm_optimum_quanto.py --json out/minilm_quanto.json
    python3 bench/minilm_optimum_quanto.py --configs f32,w8,w4hqq --speed-sentences 64
    python3 bench/minilm_optimum_quanto.py --save-weights out/minilm_quanto --embeddings out/minilm_emb
"""
import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "all-MiniLM-L6-v2"
DEFAULT_DATA = REPO / "examples" / "03_minilm" / "data"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of the model

# name: (weights, activations, optimizer); qtype names as optimum.quanto.qtypes spells them.
CONFIGS = {
    "f32": (None, None, None),
    "w8": ("qint8", None, None),
    "w8a8": ("qint8", "qint8", None),
    "fp8": ("qfloat8", None, None),
    "w8fp8a": ("qfloat8", "qfloat8", None),
    "w4max": ("qint4", None, "max"),
    "w4hqq": ("qint4", None, "hqq"),
    "w2hqq": ("qint2", None, "hqq"),
}


def read_lines(path):
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------
# Inputs


def tokenize_single(tokenizer, sentences):
    """One (input_ids, attention_mask, token_type_ids) triple of shape [1, L] per sentence."""
    out = []
    for s in sentences:
        enc = tokenizer([s], truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
        ids = enc["input_ids"]
        out.append((ids, enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(ids))))
    return out


def tokenize_batches(tokenizer, sentences, batch_size):
    """Padded batches of `batch_size` sentences in file order (the last one may be smaller)."""
    out = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i:i + batch_size], padding=True, truncation=True,
                        max_length=MAX_SEQ_LENGTH, return_tensors="pt")
        ids = enc["input_ids"]
        out.append((ids, enc["attention_mask"], enc.get("token_type_ids", torch.zeros_like(ids))))
    return out


def check_against_reference(singles, reference_path):
    """Compares the tokenizer's ids with tools/minilm_reference.py's, if that file exists."""
    if not reference_path.is_file():
        return None
    from safetensors.torch import load_file

    ref = load_file(str(reference_path))
    ids, lengths = ref["input_ids"], ref["lengths"]
    if ids.shape[0] != len(singles):
        sys.exit(f"error: {reference_path} holds {ids.shape[0]} sentences, sentences.txt {len(singles)}; "
                 "rerun tools/minilm_reference.py")
    for i, (x, _, _) in enumerate(singles):
        n = int(lengths[i])
        if x.shape[1] != n or not torch.equal(x[0], ids[i, :n]):
            sys.exit(f"error: sentence {i}: token ids differ from {reference_path}")
    return ref["embeddings"]


# ----------------------------------------------------------------------------------------------
# Model


def embed(model, ids, mask, token_types):
    """Mean pooling over the attention mask, then L2 normalisation (sentence-transformers)."""
    hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=token_types).last_hidden_state
    if hasattr(hidden, "dequantize") and type(hidden) is not torch.Tensor:
        hidden = hidden.dequantize()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1)


def make_optimizer(name):
    from optimum.quanto import AbsmaxOptimizer, HqqOptimizer, MaxOptimizer

    if name is None:
        return None  # quanto's default: AbsmaxOptimizer for 8-bit weights, MaxOptimizer below
    return {"absmax": AbsmaxOptimizer, "max": MaxOptimizer, "hqq": HqqOptimizer}[name]()


def quantized_copy(float_model, weights, activations, optimizer, calibration):
    """A frozen quantized copy of float_model; returns (model, effective optimizer name, seconds)."""
    from optimum.quanto import Calibration, freeze, qtypes, quantize

    model = copy.deepcopy(float_model)
    if weights is None and activations is None:
        return model, None, 0.0
    t0 = time.perf_counter()
    wq = qtypes[weights] if weights else None
    aq = qtypes[activations] if activations else None
    quantize(model, weights=wq, activations=aq, optimizer=make_optimizer(optimizer))
    if aq is not None:
        with Calibration():
            for ids, mask, tt in calibration:
                embed(model, ids, mask, tt)
    freeze(model)
    seconds = time.perf_counter() - t0
    effective = optimizer
    if effective is None and wq is not None:
        effective = "absmax" if wq.bits == 8 else "max"  # quanto's defaults
    return model, effective, seconds


def qtype_name(name):
    from optimum.quanto import qtypes

    return qtypes[name].name if name else None


def state_dict_bytes(model):
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def linear_weight_bytes(model):
    """Bytes of the nn.Linear weights alone (weight, or weight._data/_scale/_shift once quantized)."""
    prefixes = tuple(f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    return sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if k.startswith(prefixes))


def describe_quantization(model):
    """What quanto did to the modules: counts by class and the group sizes it chose."""
    from optimum.quanto import QModuleMixin

    kinds, groups, out_quant = {}, {}, 0
    for _, module in model.named_modules():
        if isinstance(module, QModuleMixin):
            kinds[type(module).__name__] = kinds.get(type(module).__name__, 0) + 1
            if module.weight_group_size is not None:
                key = f"{module.weight.shape[1]}->{module.weight_group_size}"
                groups[key] = groups.get(key, 0) + 1
            hook = module._quantize_hooks.get("output")
            if hook is not None and hook.id in module._forward_hooks:
                out_quant += 1
    return {"modules": kinds, "group_sizes": groups, "outputs_quantized": out_quant}


# ----------------------------------------------------------------------------------------------
# Measurements


def run_singles(model, singles):
    return torch.cat([embed(model, *x) for x in singles])


def run_batches(model, batches):
    return torch.cat([embed(model, *x) for x in batches])


def timed(fn, passes):
    times, result = [], None
    for _ in range(passes):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        result = out if result is None else result
    return times, result


def accuracy(emb, ref):
    emb64, ref64 = emb.double(), ref.double()
    cos = F.cosine_similarity(emb64, ref64, dim=1)
    return float(cos.mean()), float(cos.min()), top1_agreement(emb64, ref64)


def nearest(emb):
    sims = emb @ emb.t()
    sims.fill_diagonal_(float("-inf"))
    return sims.argmax(dim=1)


def top1_agreement(emb, ref):
    return 100.0 * float((nearest(F.normalize(emb, dim=1)) == nearest(F.normalize(ref, dim=1))).double().mean())


# ----------------------------------------------------------------------------------------------


def print_table(rows, header):
    print(header)
    print(f"{'config':<8} {'weights':<15} {'acts':<15} {'opt':<6} {'cos mean':>10} {'cos min':>10} "
          f"{'top1 %':>7} {'MB':>7} {'sps b1':>8} {'sps b32':>8}")
    for r in rows:
        print(f"{r['config']:<8} {str(r['weights']):<15} {str(r['activations']):<15} {str(r['optimizer']):<6} "
              f"{r['cosine_mean']:>10.6f} {r['cosine_min']:>10.6f} {r['top1_agreement']:>7.2f} "
              f"{r['model_bytes'] / 1e6:>7.2f} {r['sps_batch1']:>8.1f} {r['sps_batch32']:>8.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with sentences.txt and calibration.txt")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--speed-sentences", type=int, default=64,
                    help="time the first K sentences (default 64; 0 = all N), at batch 1 and as ceil(K/32) "
                         "batches of 32; accuracy always uses all N")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--save-weights", type=Path, metavar="DIR")
    ap.add_argument("--embeddings", type=Path, metavar="DIR")
    args = ap.parse_args()

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        sys.exit(f"error: unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if not (args.model / "model.safetensors").is_file():
        sys.exit(f"error: {args.model} has no model.safetensors; run tools/fetch_minilm.py first")

    t_start = time.perf_counter()
    load_before = loadavg()
    warnings.filterwarnings("ignore", message=".*requires_grad=True to a scalar.*")  # HqqOptimizer
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import optimum.quanto
    import transformers
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    float_model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32).eval()
    attn = getattr(float_model.config, "_attn_implementation", None)

    sentences = read_lines(args.data / "sentences.txt")
    calib_sentences = read_lines(args.data / "calibration.txt")
    singles = tokenize_single(tokenizer, sentences)
    batches = tokenize_batches(tokenizer, sentences, 32)
    calibration = tokenize_single(tokenizer, calib_sentences)
    st_reference = check_against_reference(singles, args.model / "reference.safetensors")
    n = len(sentences)
    k = n if args.speed_sentences <= 0 else min(args.speed_sentences, n)
    nb = (k + 31) // 32  # batches of 32 timed: the first k sentences, rounded up to whole batches
    k32 = sum(x[0].shape[0] for x in batches[:nb])
    print(f"{n} sentences ({k} timed at batch 1, {k32} at batch 32), {len(calib_sentences)} calibration sentences, "
          f"{args.threads} threads, attention '{attn}', {cpu_name()}", flush=True)

    float_emb, rows, notes = None, [], {}
    with torch.no_grad():
        if "f32" not in names:  # the float embeddings are needed as the reference anyway
            float_emb = run_singles(float_model, singles)
        for name in names:
            weights, activations, optimizer = CONFIGS[name]
            model, effective_opt, q_seconds = quantized_copy(float_model, weights, activations, optimizer, calibration)
            notes[name] = describe_quantization(model)
            # Accuracy: all N sentences, one at a time. This pass also warms up every sequence
            # length (the first call at a new length is far slower), so it is never timed.
            emb = run_singles(model, singles)
            run_batches(model, batches[:nb])  # warm-up at batch 32
            t1, _ = timed(lambda: run_singles(model, singles[:k]), args.passes)
            t32, _ = timed(lambda: run_batches(model, batches[:nb]), args.passes)
            if name == "f32":
                float_emb = emb
            cos_mean, cos_min, top1 = accuracy(emb, float_emb)
            row = {
                "config": name,
                "weights": qtype_name(weights),
                "activations": qtype_name(activations),
                "optimizer": effective_opt,
                "cosine_mean": cos_mean,
                "cosine_min": cos_min,
                "top1_agreement": top1,
                "model_bytes": state_dict_bytes(model),
                "linear_weight_bytes": linear_weight_bytes(model),
                "sps_batch1": k / statistics.median(t1),
                "sps_batch32": k32 / statistics.median(t32),
                "threads": torch.get_num_threads(),
                "quantize_seconds": round(q_seconds, 3),
                "sps_batch1_passes": [round(k / t, 3) for t in t1],
                "sps_batch32_passes": [round(k32 / t, 3) for t in t32],
            }
            rows.append(row)
            print(f"  {name:<7} cos mean {cos_mean:.6f} min {cos_min:.6f} top1 {top1:6.2f}%  "
                  f"{row['model_bytes'] / 1e6:7.2f} MB  b1 {row['sps_batch1']:7.1f}/s  b32 {row['sps_batch32']:7.1f}/s  "
                  f"(quantize {q_seconds:.1f} s; {notes[name]})", flush=True)
            if args.save_weights and weights is not None:
                save_weights(model, args.save_weights / name)
            if args.embeddings:
                from safetensors.torch import save_file

                args.embeddings.mkdir(parents=True, exist_ok=True)
                save_file({"embeddings": emb.float().contiguous()}, str(args.embeddings / f"{name}.safetensors"))
            del model

    total = time.perf_counter() - t_start
    print()
    print_table(rows, f"optimum-quanto {optimum.quanto.__version__}, torch {torch.__version__}, "
                      f"{args.threads} threads, {cpu_name()}; total {total:.0f} s")
    ref_cos = None
    if st_reference is not None:
        ref_cos = float(F.cosine_similarity(float_emb.double(), st_reference.double(), dim=1).min())
        print(f"float32 vs sentence-transformers reference (reference.safetensors): min cosine {ref_cos:.8f}")

    if args.json:
        result = {
            "tool": "optimum-quanto",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": loadavg()},
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "optimum_quanto": optimum.quanto.__version__},
            "threads": args.threads,
            "passes": args.passes,
            "n_sentences": n,
            "n_calibration": len(calib_sentences),
            "speed_sentences": k,
            "speed_sentences_batch32": k32,
            "accuracy_batch": 1,
            "timing": "forward + mean pooling + L2 normalisation from pre-tokenized ids (tokenization not timed); "
                      "median of the timed passes, after an untimed pass over every sentence (batch 1) "
                      "and one over the timed batches (batch 32)",
            "attn_implementation": attn,
            "calibration": "each calibration sentence alone (unpadded), in file order, inside "
                           "optimum.quanto.Calibration() (momentum 0.9, streamline)",
            "float_vs_reference_cosine_min": ref_cos,
            "quantization": notes,
            "configs": rows,
            "total_seconds": round(total, 1),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


def save_weights(model, folder):
    """quanto's documented serialisation: state_dict -> safetensors, quantization_map -> json."""
    from optimum.quanto import quantization_map
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "quanto_qmap.json").write_text(json.dumps(quantization_map(model), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
