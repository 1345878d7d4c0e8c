#!/usr/bin/env python3
"""Plots a bench_matmul JSON (written with --json=PATH) as an SVG.

Left panel: at batch m = 1, the fraction of the measured read bandwidth each row reaches (weight
bytes streamed per second / read bandwidth with the same thread count), one bar per thread count.
Right panel: speed-up over the float32 baseline by batch size (solid: first thread count, dashed:
the others).

    python3 bench/plot_matmul.py bench_matmul.json [-o docs/bench_matmul.svg] [--shape 4096x4096]

Uses matplotlib when it is installed, else writes the SVG by hand (--no-matplotlib forces that).
"""
import argparse
import json
import math
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939"]


def label_of(row):
    if row["qtype"] == "float32":
        return "float32 " + ("baseline" if row["policy"] == "baseline" else f"{row['isa']} {row['policy']}")
    isa = "" if row["isa"] == "avx2" else f" [{row['isa']}]"
    return f"{row['qtype']} {row['policy']}{isa}"


def load(path, shape):
    with open(path) as f:
        data = json.load(f)
    rows = [r for r in data["rows"] if r.get("seconds")]
    shapes = sorted({(r["n"], r["k"]) for r in rows}, key=lambda s: (s != (4096, 4096), s))
    if not shapes:
        sys.exit("plot_matmul: no rows in " + path)
    if shape:
        n, k = (int(v) for v in shape.lower().split("x"))
        if (n, k) not in shapes:
            sys.exit(f"plot_matmul: shape {shape} not in the data (have {', '.join(f'{a}x{b}' for a, b in shapes)})")
        sel = (n, k)
    else:
        sel = shapes[0]
    rows = [r for r in rows if (r["n"], r["k"]) == sel]
    return data, rows, sel


def panel_data(rows):
    threads = sorted({r["threads"] for r in rows})
    # left: m = 1, bw fraction per label and thread count (the scalar reference is off the scale; kept)
    bw = defaultdict(dict)
    for r in rows:
        if r["m"] == 1 and r.get("bw_fraction") is not None:
            bw[label_of(r)][r["threads"]] = r["bw_fraction"]
    bars = sorted(bw, key=lambda l: (l.startswith("float32"), "[" in l, l))
    # right: speed-up by batch, per label and thread count (the baseline itself is 1 by definition)
    sp = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("speedup_vs_fp32") is None or r["policy"] == "baseline" or r["isa"] == "scalar":
            continue
        sp[label_of(r)][r["threads"]][r["m"]] = r["speedup_vs_fp32"]
    lines = sorted(sp, key=lambda l: (l.startswith("float32"), l))
    return threads, bars, bw, lines, sp


def plot_matplotlib(out, title, threads, bars, bw, lines, sp):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1.25, 1]})
    width = 0.8 / max(len(threads), 1)
    for j, t in enumerate(threads):
        xs = [i + (j - (len(threads) - 1) / 2) * width for i in range(len(bars))]
        ax1.bar(xs, [bw[b].get(t, 0.0) for b in bars], width, label=f"{t} thread{'s' if t > 1 else ''}",
                color=PALETTE[j % len(PALETTE)])
    ax1.axhline(1.0, color="black", lw=0.8, ls=":")
    ax1.set_xticks(range(len(bars)))
    ax1.set_xticklabels(bars, rotation=55, ha="right", fontsize=8)
    ax1.set_ylabel("weight GB/s / measured read GB/s")
    ax1.set_title("m = 1: fraction of read bandwidth")
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    for i, l in enumerate(lines):
        for j, t in enumerate(threads):
            pts = sorted(sp[l][t].items())
            if not pts:
                continue
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                     ls="-" if j == 0 else "--", label=l if j == 0 else None)
    ax2.axhline(1.0, color="black", lw=0.8, ls=":")
    ax2.set_xscale("log", base=2)
    ms = sorted({m for l in lines for t in sp[l] for m in sp[l][t]})
    if ms:
        ax2.set_xticks(ms)
        ax2.set_xticklabels([str(m) for m in ms])
        ax2.minorticks_off()
    ax2.set_xlabel("batch m")
    ax2.set_ylabel("speed-up over float32 baseline")
    styles = ", ".join(f"{t} thread{'s' if t > 1 else ''} {'solid' if j == 0 else 'dashed'}" for j, t in enumerate(threads))
    ax2.set_title(f"speed-up vs float32 ({styles})")
    ax2.legend(fontsize=7, ncol=2)
    ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format="svg")


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.items = w, h, []

    def add(self, s):
        self.items.append(s)

    def line(self, x1, y1, x2, y2, color="#000", width=1.0, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')

    def rect(self, x, y, w, h, color):
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}"/>')

    def text(self, x, y, s, size=11, anchor="middle", rotate=None, color="#000"):
        r = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-family="sans-serif" '
                 f'text-anchor="{anchor}" fill="{color}"{r}>{escape(s)}</text>')

    def polyline(self, pts, color, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="1.6"{d}/>')
        for x, y in pts:
            self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')

    def write(self, path):
        with open(path, "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                    f'viewBox="0 0 {self.w} {self.h}">\n<rect width="100%" height="100%" fill="white"/>\n')
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")


def nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def plot_svg(out, title, threads, bars, bw, lines, sp):
    s = Svg(1400, 640)
    s.text(700, 22, title, size=13)
    # left panel: grouped bars
    x0, y0, pw, ph = 80, 60, 640, 380
    top = nice_max(max([v for b in bars for v in bw[b].values()] + [1.0]))
    s.text(x0 + pw / 2, y0 - 12, "m = 1: fraction of read bandwidth", size=12)
    for i in range(6):
        v = top * i / 5
        y = y0 + ph - ph * v / top
        s.line(x0, y, x0 + pw, y, "#ddd")
        s.text(x0 - 6, y + 4, f"{v:.2f}", size=10, anchor="end")
    y1 = y0 + ph - ph * 1.0 / top
    s.line(x0, y1, x0 + pw, y1, "#000", 1, "3,3")
    s.text(24, y0 + ph / 2, "weight GB/s / read GB/s", size=11, rotate=-90)
    slot = pw / max(len(bars), 1)
    bw_w = slot * 0.8 / max(len(threads), 1)
    for i, b in enumerate(bars):
        for j, t in enumerate(threads):
            v = bw[b].get(t, 0.0)
            x = x0 + slot * i + slot * 0.1 + bw_w * j
            s.rect(x, y0 + ph - ph * v / top, bw_w, ph * v / top, PALETTE[j % len(PALETTE)])
        cx = x0 + slot * (i + 0.5)
        s.text(cx, y0 + ph + 12, b, size=9, anchor="end", rotate=-55)
    s.line(x0, y0 + ph, x0 + pw, y0 + ph)
    s.line(x0, y0, x0, y0 + ph)
    for j, t in enumerate(threads):
        s.rect(x0 + pw - 110, y0 + 8 + 16 * j, 10, 10, PALETTE[j % len(PALETTE)])
        s.text(x0 + pw - 95, y0 + 17 + 16 * j, f"{t} thread{'s' if t > 1 else ''}", size=10, anchor="start")
    # right panel: speed-up lines on a log2 x axis
    x0, pw = 840, 500
    ms = sorted({m for l in lines for t in sp[l] for m in sp[l][t]})
    ymax = nice_max(max([v for l in lines for t in sp[l] for v in sp[l][t].values()] + [1.0]))
    styles = ", ".join(f"{t} thread{'s' if t > 1 else ''} {'solid' if j == 0 else 'dashed'}" for j, t in enumerate(threads))
    s.text(x0 + pw / 2, y0 - 12, f"speed-up vs float32 ({styles})", size=12)
    if ms:
        lo, hi = math.log2(ms[0]), math.log2(ms[-1]) if ms[-1] > ms[0] else math.log2(ms[0]) + 1
        fx = lambda m: x0 + pw * (math.log2(m) - lo) / (hi - lo)
        fy = lambda v: y0 + ph - ph * v / ymax
        for i in range(6):
            v = ymax * i / 5
            s.line(x0, fy(v), x0 + pw, fy(v), "#ddd")
            s.text(x0 - 6, fy(v) + 4, f"{v:.1f}", size=10, anchor="end")
        for m in ms:
            s.line(fx(m), y0 + ph, fx(m), y0 + ph + 4)
            s.text(fx(m), y0 + ph + 16, str(m), size=10)
        s.text(x0 + pw / 2, y0 + ph + 34, "batch m", size=11)
        s.line(x0, fy(1.0), x0 + pw, fy(1.0), "#000", 1, "3,3")
        for i, l in enumerate(lines):
            color = PALETTE[i % len(PALETTE)]
            for j, t in enumerate(threads):
                pts = sorted(sp[l][t].items())
                if pts:
                    s.polyline([(fx(m), fy(v)) for m, v in pts], color, None if j == 0 else "5,3")
            lx, ly = x0 + (10 if i % 2 == 0 else 260), y0 + ph + 60 + 14 * (i // 2)  # legend, two columns
            s.line(lx, ly, lx + 20, ly, color, 2)
            s.text(lx + 25, ly + 4, l, size=10, anchor="start")
    s.line(x0, y0 + ph, x0 + pw, y0 + ph)
    s.line(x0, y0, x0, y0 + ph)
    s.text(x0 - 50, y0 + ph / 2, "speed-up over float32 baseline", size=11, rotate=-90)
    s.write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="bench_matmul --json output")
    ap.add_argument("-o", "--output", default="docs/bench_matmul.svg")
    ap.add_argument("--shape", help="NxK to plot (default 4096x4096, else the first shape in the data)")
    ap.add_argument("--no-matplotlib", action="store_true", help="write the SVG by hand even if matplotlib is installed")
    args = ap.parse_args()
    data, rows, (n, k) = load(args.json, args.shape)
    threads, bars, bw, lines, sp = panel_data(rows)
    ctx = data.get("context", {})
    roof = {r["threads"]: r for r in data.get("roofline", {}).get("used", [])}
    bw_txt = ", ".join(f"{t}T {roof[t]['read_gbps']:.1f} GB/s" for t in threads if t in roof)
    title = (f"quanto-cpp matmul, W {n}x{k} (n x k), {ctx.get('cpu', '?')}, {ctx.get('date', '')}; "
             f"read bandwidth {bw_txt}")
    use_mpl = not args.no_matplotlib
    if use_mpl:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            use_mpl = False
    (plot_matplotlib if use_mpl else plot_svg)(args.output, title, threads, bars, bw, lines, sp)
    print(f"wrote {args.output} ({'matplotlib' if use_mpl else 'hand-written SVG'})")


if __name__ == "__main__":
    main()
