"""Writes examples/data/digits.csv, the 8x8 handwritten digits used by the QAT example.

What it does
    Loads scikit-learn's bundled digits dataset (`sklearn.datasets.load_digits()`: 1797 samples,
    64 features holding integer pixel counts 0..16, labels 0..9) and writes it as plain CSV:
    a header line `label,p0,p1,...,p63`, then one line per sample in the dataset's own order,
    the label followed by the 64 pixel values, all as integers (no decimals). Pixel `p{8*r+c}`
    is row r, column c of the 8x8 image. The output is deterministic: same scikit-learn data,
    same bytes (LF line endings, no trailing spaces, final newline).

Where the data comes from
    scikit-learn ships a copy of the test set (optdigits.tes) of the UCI Machine Learning
    Repository dataset "Optical Recognition of Handwritten Digits" by E. Alpaydin and
    C. Kaynak (1998), https://doi.org/10.24432/C50P49, distributed by UCI under CC BY 4.0.
    See examples/data/README.md for provenance, licence and attribution.

How to run (from the repository root; needs Python 3.11+ and scikit-learn)
    python3 tools/export_digits.py            # writes examples/data/digits.csv
    python3 tools/export_digits.py --check    # re-reads the CSV, exit 1 if it differs
    python3 tools/export_digits.py --out PATH # write (or --check) another path
"""
import argparse
import sys
from pathlib import Path

from sklearn.datasets import load_digits

N_FEATURES = 64
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "digits.csv"


def dataset_rows() -> list[list[int]]:
    """The dataset as integer rows [label, p0..p63], checking it is what we expect."""
    digits = load_digits()
    data, target = digits.data, digits.target
    if data.shape != (1797, N_FEATURES) or target.shape != (1797,):
        raise SystemExit(f"unexpected dataset shape: data {data.shape}, target {target.shape}")
    rows = []
    for x, y in zip(data, target):
        pixels = [int(v) for v in x]
        if any(float(p) != v for p, v in zip(pixels, x)) or not all(0 <= p <= 16 for p in pixels):
            raise SystemExit("dataset holds a pixel that is not an integer in 0..16")
        if not 0 <= int(y) <= 9:
            raise SystemExit(f"dataset holds a label outside 0..9: {y}")
        rows.append([int(y)] + pixels)
    return rows


def header() -> str:
    return ",".join(["label"] + [f"p{i}" for i in range(N_FEATURES)])


def render(rows: list[list[int]]) -> str:
    lines = [header()] + [",".join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def check(path: Path, rows: list[list[int]]) -> bool:
    """Parses the CSV back and compares it value by value (and byte by byte) with the dataset."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        print(f"check failed: cannot read {path}: {e}", file=sys.stderr)
        return False
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != header():
        print("check failed: header line differs", file=sys.stderr)
        return False
    body = lines[1:]
    if len(body) != len(rows):
        print(f"check failed: {len(body)} data lines, dataset has {len(rows)}", file=sys.stderr)
        return False
    for i, (line, want) in enumerate(zip(body, rows)):
        try:
            got = [int(v) for v in line.split(",")]
        except ValueError:
            print(f"check failed: line {i + 2} is not all integers", file=sys.stderr)
            return False
        if got != want:
            print(f"check failed: line {i + 2} (sample {i}) differs from the dataset", file=sys.stderr)
            return False
    if text != render(rows):
        print("check failed: values match but the bytes differ from a fresh export", file=sys.stderr)
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV path (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="verify the CSV equals the dataset, exit 1 if not")
    args = parser.parse_args()

    rows = dataset_rows()
    if args.check:
        if not check(args.out, rows):
            return 1
        print(f"{args.out}: OK ({len(rows)} samples match load_digits())")
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        f.write(render(rows))
    print(f"wrote {args.out} ({len(rows)} samples, {args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
