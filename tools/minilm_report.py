#!/usr/bin/env python3
"""Writes the all-MiniLM-L6-v2 results (quanto-cpp next to optimum-quanto) into docs/.

What it reads
    --cpp PATH     the JSON written by the C++ example examples/03_minilm (default
                   out/minilm_cpp.json)
    --quanto PATH  the JSON written by bench/minilm_optimum_quanto.py (default
                   out/minilm_quanto.json)
    Both have the same schema: a top-level object with "machine" {"cpu", ...}, "versions",
    "threads", "n_sentences", "speed_sentences", ... and "configs", a list of
    {"config", "weights", "activations", "optimizer", "cosine_mean", "cosine_min",
     "top1_agreement", "model_bytes", "sps_batch1", "sps_batch32", "threads"}; a C++ config may
    add "weights_equal_quanto": true/false, either side "linear_weight_bytes" (then the table
    gets a column for it). Missing keys are shown as "-".

What it writes
    docs/minilm.md   only the part between the lines `<!-- results:begin -->` and
                     `<!-- results:end -->`: a provenance line, the side-by-side table
                     (cosine to float32 mean/min, top-1 agreement, model MB, sentences/s at batch
                     1 and 32, C++ / quanto speed-up, whether the weights equal quanto's), the
                     targets of the issue with a pass/fail mark, and the chart. The prose around
                     the markers is left as it is; a missing file is created with a title and the
                     markers.
    docs/minilm.svg  two panels: 1 - cosine to float32 per configuration (log scale; bar = mean,
                     dot = worst sentence), C++ and quanto side by side; sentences/s at batch 1,
                     C++ and quanto side by side, with the speed-up written above. Deterministic:
                     fixed svg.hashsalt, text kept as text, no date or version in the metadata.

How to run (from the repository root)
    python3 tools/minilm_report.py --cpp out/minilm_cpp.json --quanto out/minilm_quanto.json
    python3 tools/minilm_report.py ... --md PATH --svg PATH   # other outputs
    python3 tools/minilm_report.py ... --check                # exit 1 if docs/ would change
"""
import argparse
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DEFAULT_TITLE = "# all-MiniLM-L6-v2 with quanto-cpp\n"

# The issue's targets: (description, check(cpp rows by config, quanto rows by config) -> bool | None).
COS_TARGETS = [("w8", 0.999), ("fp8", 0.998), ("w4max", 0.99), ("w4hqq", 0.99)]
SPEED_TARGETS = [("w8", 5.0), ("w4max", 5.0), ("w4hqq", 5.0)]


def load(path):
    data = json.loads(Path(path).read_text())
    rows = {r["config"]: r for r in data.get("configs", [])}
    return data, rows


def fmt(value, spec, missing="-"):
    if value is None:
        return missing
    return format(value, spec)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def qtype_label(row):
    if row is None:
        return "-"
    w = row.get("weights") or "-"
    a = row.get("activations") or "-"
    opt = row.get("optimizer")
    w = w.replace("qfloat8_e4m3fn", "qfloat8")
    a = a.replace("qfloat8_e4m3fn", "qfloat8")
    return f"{w} / {a}" + (f" ({opt})" if opt and opt != "absmax" else "")


def provenance(cpp, quanto):
    def one(data, name):
        m = data.get("machine", {})
        v = data.get("versions", {})
        vs = ", ".join(f"{k} {val}" for k, val in v.items())
        return (f"{name}: {m.get('cpu', '?')}, {data.get('threads', '?')} threads"
                + (f"; {vs}" if vs else ""))

    n = quanto.get("n_sentences", cpp.get("n_sentences"))
    k1 = quanto.get("speed_sentences")
    k32 = quanto.get("speed_sentences_batch32")
    lines = [
        f"Accuracy over {n} sentences (examples/03_minilm/data/sentences.txt), each against the float32 "
        f"embeddings of the same implementation; speed over the first {k1} sentences at batch 1 and "
        f"{k32} as padded batches of 32, median of {quanto.get('passes', '?')} passes.",
        "",
        f"- {one(cpp, 'quanto-cpp')}",
        f"- {one(quanto, 'optimum-quanto')}",
    ]
    if cpp.get("speed_sentences") not in (None, k1) or cpp.get("n_sentences") not in (None, n):
        lines.append(f"- note: the C++ run used {cpp.get('n_sentences')} sentences, "
                     f"{cpp.get('speed_sentences')} timed: not the same sets")
    return lines


def table(cpp_rows, q_rows, order):
    """One row per config; every measured cell reads "C++ / quanto"."""
    head = ("| config | weights / activations | cosine mean | cosine min | top-1 agreement % | model MB "
            "| sentences/s batch 1 | speed-up b1 | sentences/s batch 32 | speed-up b32 | weights = quanto |")
    sep = "|---|---|" + "---:|" * 8 + ":---:|"
    lines = [head, sep]

    def pair(c, q, key, spec, scale=1.0):
        cv, qv = c.get(key), q.get(key)
        cv = None if cv is None else cv * scale
        qv = None if qv is None else qv * scale
        return f"{fmt(cv, spec)} / {fmt(qv, spec)}"

    linear = any("linear_weight_bytes" in r for r in list(cpp_rows.values()) + list(q_rows.values()))
    if linear:
        lines = [head.replace("| model MB |", "| model MB | Linear weights MB |"), "|---|---|" + "---:|" * 9 + ":---:|"]
    for name in order:
        c, q = cpp_rows.get(name, {}), q_rows.get(name, {})
        eq = c.get("weights_equal_quanto")
        cells = [
            f"`{name}`", qtype_label(c or q),
            pair(c, q, "cosine_mean", ".6f"),
            pair(c, q, "cosine_min", ".6f"),
            pair(c, q, "top1_agreement", ".1f"),
            pair(c, q, "model_bytes", ".2f", 1e-6),
            *([pair(c, q, "linear_weight_bytes", ".2f", 1e-6)] if linear else []),
            pair(c, q, "sps_batch1", ".1f"),
            fmt(ratio(c.get("sps_batch1"), q.get("sps_batch1")), ".1f") + "×",
            pair(c, q, "sps_batch32", ".1f"),
            fmt(ratio(c.get("sps_batch32"), q.get("sps_batch32")), ".1f") + "×",
            "-" if eq is None else ("yes" if eq else "**no**"),
        ]
        lines.append("| " + " | ".join(cells).replace("-×", "-") + " |")
    return lines


def targets(cpp_rows, q_rows):
    def mark(ok):
        return "-" if ok is None else ("met" if ok else "**not met**")

    lines = ["Targets of the issue (cosine checked on the mean over the sentences; the minimum is in the table):", ""]
    for name, floor in COS_TARGETS:
        c = cpp_rows.get(name, {}).get("cosine_mean")
        q = q_rows.get(name, {}).get("cosine_mean")
        ok = None if c is None else c >= floor
        lines.append(f"- `{name}` cosine ≥ {floor}: C++ {fmt(c, '.6f')}, quanto {fmt(q, '.6f')}: {mark(ok)}")
    c_max = cpp_rows.get("w4max", {}).get("cosine_mean")
    c_hqq = cpp_rows.get("w4hqq", {}).get("cosine_mean")
    ok = None if c_max is None or c_hqq is None else c_hqq >= c_max
    lines.append(f"- `w4hqq` cosine ≥ `w4max` cosine (C++): {fmt(c_hqq, '.6f')} vs {fmt(c_max, '.6f')}: {mark(ok)}")
    for name, factor in SPEED_TARGETS:
        r = ratio(cpp_rows.get(name, {}).get("sps_batch1"), q_rows.get(name, {}).get("sps_batch1"))
        ok = None if r is None else r >= factor
        lines.append(f"- `{name}` C++ ≥ {factor:g}× optimum-quanto sentences/s at batch 1: {fmt(r, '.1f')}×: {mark(ok)}")
    eq = [name for name, r in cpp_rows.items() if r.get("weights_equal_quanto") is False]
    checked = [name for name, r in cpp_rows.items() if r.get("weights_equal_quanto") is not None]
    if checked:
        lines.append(f"- quantized weights equal optimum-quanto's bit for bit: "
                     f"{len(checked) - len(eq)} of {len(checked)} configs"
                     + (f" (differ: {', '.join(eq)})" if eq else ""))
    return lines


def render_section(cpp, quanto, cpp_rows, q_rows, order, svg_name):
    lines = [BEGIN, ""]
    lines += provenance(cpp, quanto)
    lines += [""] + table(cpp_rows, q_rows, order)
    lines += ["", "Each cell: quanto-cpp / optimum-quanto. Speed-up: C++ sentences/s divided by optimum-quanto's. "
                  "Model MB: bytes of all tensors in the "
                  "model's state dict (quantized weights as data + scales + shifts; the 30522 × 384 word "
                  "embeddings stay float32 in both).", ""]
    lines += targets(cpp_rows, q_rows)
    lines += ["", f"![all-MiniLM-L6-v2: accuracy and speed, quanto-cpp vs optimum-quanto]({svg_name})", "", END]
    return "\n".join(lines) + "\n"


def splice(existing, section):
    if existing is None:
        return DEFAULT_TITLE + "\n" + section
    if BEGIN not in existing or END not in existing:
        sep = "" if existing.endswith("\n") else "\n"
        return existing + sep + "\n" + section
    start = existing.index(BEGIN)
    stop = existing.index(END, start) + len(END)
    rest = existing[stop:]
    if rest.startswith("\n"):
        rest = rest[1:]
    return existing[:start] + section + rest


def chart(cpp_rows, q_rows, order):
    """The two-panel chart as SVG text."""
    import matplotlib.pyplot as plt

    fig = build_figure(cpp_rows, q_rows, order)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Title": "all-MiniLM-L6-v2"})
    plt.close(fig)
    return buf.getvalue()


def build_figure(cpp_rows, q_rows, order):
    try:
        import matplotlib
    except ImportError:
        import subprocess

        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({
        "svg.hashsalt": "quanto-cpp-minilm",
        "svg.fonttype": "none",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    c_color, q_color = "#1f6fb4", "#e07b20"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38

    # Panel 1: 1 - cosine (the float32 row is 0 by construction and left out).
    acc = [n for n in order if n != "f32"]
    xs = range(len(acc))
    floor = 1e-7
    for side, rows, color, dx in (("quanto-cpp", cpp_rows, c_color, -width / 2),
                                  ("optimum-quanto", q_rows, q_color, width / 2)):
        means = [max(floor, 1 - rows[n]["cosine_mean"]) if rows.get(n, {}).get("cosine_mean") is not None else None
                 for n in acc]
        mins = [max(floor, 1 - rows[n]["cosine_min"]) if rows.get(n, {}).get("cosine_min") is not None else None
                for n in acc]
        bx = [x + dx for x, m in zip(xs, means) if m is not None]
        ax1.bar(bx, [m for m in means if m is not None], width, color=color, label=f"{side}: mean")
        mx = [x + dx for x, m in zip(xs, mins) if m is not None]
        ax1.plot(mx, [m for m in mins if m is not None], "o", color=color, markersize=4,
                 markeredgecolor="black", markeredgewidth=0.5, label=f"{side}: worst sentence")
    ax1.set_yscale("log")
    ax1.set_xticks(list(xs), acc)
    ax1.set_ylabel("1 − cosine to float32 (lower is better)")
    ax1.set_title("Accuracy: embedding cosine to float32")
    for y, label in ((1e-3, "0.999"), (1e-2, "0.99")):
        ax1.axhline(y, color="grey", linewidth=0.6, linestyle="--")
        ax1.annotate(f"cos {label}", xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(2, 0),
                     textcoords="offset points", va="center", ha="left", fontsize=7, color="grey")
    ax1.legend(fontsize=7, frameon=False, loc="upper left")

    # Panel 2: sentences/s at batch 1.
    xs = range(len(order))
    top = 0
    for side, rows, color, dx in (("quanto-cpp", cpp_rows, c_color, -width / 2),
                                  ("optimum-quanto", q_rows, q_color, width / 2)):
        vals = [rows.get(n, {}).get("sps_batch1") for n in order]
        bx = [x + dx for x, v in zip(xs, vals) if v is not None]
        ax2.bar(bx, [v for v in vals if v is not None], width, color=color, label=side)
        top = max([top] + [v for v in vals if v is not None])
    for x, n in zip(xs, order):
        r = ratio(cpp_rows.get(n, {}).get("sps_batch1"), q_rows.get(n, {}).get("sps_batch1"))
        if r is not None:
            y = max(cpp_rows[n]["sps_batch1"], q_rows[n]["sps_batch1"])
            ax2.text(x, y * 1.08, f"{r:.1f}×", ha="center", va="bottom", fontsize=7)
    ax2.set_yscale("log")
    ax2.set_ylim(top=max(top, 1) * 3)
    ax2.set_xticks(list(xs), order)
    ax2.set_ylabel("sentences / s (higher is better)")
    ax2.set_title("Speed: batch 1, one sentence at a time")
    ax2.legend(fontsize=7, frameon=False, loc="upper right")

    fig.tight_layout()
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpp", type=Path, default=REPO / "out" / "minilm_cpp.json")
    ap.add_argument("--quanto", type=Path, default=REPO / "out" / "minilm_quanto.json")
    ap.add_argument("--md", type=Path, default=REPO / "docs" / "minilm.md")
    ap.add_argument("--svg", type=Path, default=REPO / "docs" / "minilm.svg")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if an output would change")
    args = ap.parse_args()

    cpp, cpp_rows = load(args.cpp)
    quanto, q_rows = load(args.quanto)
    order = list(q_rows) + [n for n in cpp_rows if n not in q_rows]

    existing = args.md.read_text(encoding="utf-8") if args.md.is_file() else None
    md = splice(existing, render_section(cpp, quanto, cpp_rows, q_rows, order, args.svg.name))
    svg = chart(cpp_rows, q_rows, order)

    outputs = {args.md: md, args.svg: svg}
    if args.check:
        stale = [str(p) for p, text in outputs.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print("would change: " + ", ".join(stale))
            sys.exit(1)
        print("ok: docs are up to date")
        return
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
