#!/usr/bin/env python3
"""Picks English sentences from installed Debian package documentation for examples/03_minilm.

What it writes (in examples/03_minilm/data/ unless --out-dir)
    sentences.txt             the evaluation set: N (default 256) distinct sentences, one a line
    calibration.txt           8 further sentences for activation calibration, none in sentences.txt
    gptq_calibration.txt      128 further sentences for calibrated weight quantization (GPTQ),
                              in neither of the two above
    sentences.sources.txt     line i: the Debian package, its version and the file sentence i of
                              sentences.txt came from (after a '#' comment header)
    calibration.sources.txt   the same for calibration.txt (gptq_calibration.sources.txt likewise)
Only the chosen sentences are committed, never the documents they come from.

Where the sentences come from
    Prose documents under /usr/share/doc/<package>/ (the files that Debian packages install):
    *.txt, *.md, *.rst and README* files, gzip-compressed or not, skipping symbolic links,
    HTML, and changelogs, release notes, news, copyright/licence, authors/thanks files. Each
    document is reduced to prose paragraphs (code fences, indented blocks, headings, tables,
    markup lines, option lists dropped), joined into running text and split into sentences.

Which sentences qualify
    6..40 words; printable ASCII only; starts with a capital letter and ends with '.', '!' or
    '?'; no URLs, e-mail addresses, file paths, command lines, code punctuation ({}[]<>`|$=_#*\\),
    version numbers or licence boilerplate; at least 85% of the words are plain words.
    Duplicates (case- and space-insensitive) are counted once.

How the selection is deterministic
    Qualifying sentences are ordered by the SHA-256 of their text (independent of the order the
    files are read in) and taken greedily with at most 3 sentences per document and 16 per
    package, for variety. The first 8 taken form calibration.txt, the next N sentences.txt, the
    next 128 gptq_calibration.txt (greedy, so adding that set changed neither of the first two).
    The same installed documentation gives the same files byte for byte; another machine with
    other packages (or other versions) gives another selection, hence --check.

How to run (from the repository root)
    python3 tools/make_minilm_sentences.py            # (re)writes the four files
    python3 tools/make_minilm_sentences.py --check    # exit 1 if they differ from a fresh pick
    python3 tools/make_minilm_sentences.py --stats    # also print how many candidates qualified
    Options: --doc-root DIR (default /usr/share/doc), --count N, --out-dir DIR.
"""
import argparse
import gzip
import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "examples" / "03_minilm" / "data"
DEFAULT_COUNT = 256
CALIBRATION_COUNT = 8
GPTQ_CALIBRATION_COUNT = 128
PER_FILE = 3
PER_PACKAGE = 16
MIN_WORDS, MAX_WORDS = 6, 40

DOC_SUFFIXES = (".txt", ".md", ".rst", ".markdown")
# Document names that are not prose about the software (history, legal, people, templates).
SKIP_NAME = re.compile(
    r"(changelog|changes|news|history|relnotes|release[-_ ]?notes|copyright|copying|licen[cs]e|"
    r"authors|thanks|credits|contributors|maintainers|code[-_]of[-_]conduct|security|governance|"
    r"todo|bugs|requirements|pull[-_]request|issue[-_]template|readme\.source)",
    re.IGNORECASE)
SKIP_DIR = re.compile(r"^(RelNotes|html|examples?|tests?|api-changes)$", re.IGNORECASE)

# Sentence-level rejections.
NON_ASCII = re.compile(r"[^\x20-\x7e]")
CODE_CHARS = re.compile(r"[{}\[\]<>`|$=_#*\\~^@]")
URL = re.compile(r"(https?://|ftp://|www\.|\.(com|org|net|io|de|html?)\b)", re.IGNORECASE)
PATH = re.compile(r"(^|\s|\()(/|\./|~/)\S|\S/\S")
VERSIONISH = re.compile(r"\d+\.\d+")
CMDISH = re.compile(r"(^|[\s'\"(])-{1,2}[a-zA-Z]|\w\((\d\w*)?\)|\s[.,;:!?]|^[A-Z]:")
DOTTED = re.compile(r"\w\.\w")
LEGAL = re.compile(
    r"(licen[cs]e|copyright|warranty|merchantability|gpl|redistribut|liability|all rights reserved|"
    r"free software foundation|terms and conditions|patent)", re.IGNORECASE)
INNER_STOP = re.compile(r"[.!?]\s|:\s[A-Z]")
MARKUP = re.compile(r"(:[a-z]+:|\.\. |::|-->|<--)")
ABBREV = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|Dr|Mr|Mrs|Ms|No|Fig|approx|resp)\.$", re.IGNORECASE)
WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*[A-Za-z]?[.,;:!?)\"']*$|^\(?[A-Za-z]+[,;:]?$|^[0-9]+[,.]?$")


def read_text(path):
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def candidate_files(doc_root):
    """Prose documents under doc_root, as (package dir name, Path), in sorted order."""
    files = []
    for pkg_dir in sorted(p for p in doc_root.iterdir() if p.is_dir() and not p.is_symlink()):
        for dirpath, dirnames, filenames in os.walk(pkg_dir, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not SKIP_DIR.match(d))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                base = name[:-3] if name.endswith(".gz") else name
                if SKIP_NAME.search(base):
                    continue
                if base.lower().endswith(DOC_SUFFIXES) or base.upper().startswith("README"):
                    files.append((pkg_dir.name, path))
    return files


def prose_paragraphs(text):
    """Splits a text/markdown/rst document into paragraphs of running prose."""
    paragraphs, current = [], []
    in_fence = False
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            if current:
                paragraphs.append(current)
                current = []
            continue
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        is_underline = bool(stripped) and len(set(stripped)) == 1 and stripped[0] in "=-~^*+#_"
        is_heading_text = bool(nxt) and len(set(nxt)) == 1 and nxt[0] in "=-~^*+#" and len(nxt) >= 3
        breaks = (
            in_fence or not stripped or is_underline or is_heading_text
            or line.startswith(("\t", "    ")) and not current  # indented code block
            or stripped.startswith(("#", "|", ">", "..", "$ ", "% ", "+--", "<", "[", "{"))
            or re.match(r"^(-{1,2}\w|[A-Z_]{3,}=|\S+\s*:$)", stripped)  # options, env, definitions
        )
        if breaks:
            if current:
                paragraphs.append(current)
                current = []
            continue
        bullet = re.match(r"^([-*+]|\d+[.)]|[a-z][.)])\s+", stripped)
        if bullet:  # a list item starts its own paragraph
            if current:
                paragraphs.append(current)
            current = [stripped[bullet.end():]]
            continue
        current.append(stripped)
    if current:
        paragraphs.append(current)
    return [" ".join(p) for p in paragraphs]


def split_sentences(paragraph):
    """Splits running text at '.', '!' or '?' followed by a space and a capital letter."""
    text = re.sub(r"\s+", " ", paragraph).strip()
    pieces, start = [], 0
    for m in re.finditer(r"[.!?][\"')]?(?= [A-Z])", text):
        end = m.end()
        if ABBREV.search(text[start:m.start() + 1]):
            continue
        pieces.append(text[start:end].strip())
        start = end + 1
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def qualifies(sentence):
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not sentence[0].isupper() or sentence[-1] not in ".!?":
        return False
    if sentence[-2] in ".!?:;,":  # "...", "?." and similar
        return False
    for pattern in (NON_ASCII, CODE_CHARS, URL, PATH, VERSIONISH, CMDISH, LEGAL, MARKUP):
        if pattern.search(sentence):
            return False
    if DOTTED.search(sentence[:-1]):  # file.ext, module.attr, e.g. inside the sentence
        return False
    if INNER_STOP.search(sentence[:-1]):  # two sentences the splitter kept together, "Key: Value"
        return False
    if sentence.count("(") != sentence.count(")") or sentence.count('"') % 2:
        return False
    if sum(1 for w in words if WORD.match(w)) < 0.85 * len(words):
        return False
    if sum(1 for w in words if w.isupper() and len(w) > 1) > 3:  # shouting or acronym soup
        return False
    if sum(1 for c in sentence if c.isalpha()) < 0.75 * len(sentence.replace(" ", "")):
        return False
    return True


def normalize_key(sentence):
    return re.sub(r"\s+", " ", sentence).strip().lower()


def sha(sentence):
    return hashlib.sha256(sentence.encode("utf-8")).hexdigest()


def collect(doc_root):
    """All qualifying sentences: {key: (sentence, package dir, Path)}; the first file wins."""
    found = {}
    n_files = 0
    for pkg, path in candidate_files(doc_root):
        text = read_text(path)
        if text is None:
            continue
        n_files += 1
        for paragraph in prose_paragraphs(text):
            for sentence in split_sentences(paragraph):
                if qualifies(sentence):
                    found.setdefault(normalize_key(sentence), (sentence, pkg, path))
    return found, n_files


def select(found, total):
    per_file, per_pkg = Counter(), Counter()
    chosen = []
    for key in sorted(found, key=lambda k: (sha(k), k)):
        sentence, pkg, path = found[key]
        if per_file[path] >= PER_FILE or per_pkg[pkg] >= PER_PACKAGE:
            continue
        per_file[path] += 1
        per_pkg[pkg] += 1
        chosen.append((sentence, pkg, path))
        if len(chosen) == total:
            break
    return chosen


def owning_packages(paths):
    """{path: 'package version'} from dpkg (the doc folder name where dpkg does not know it)."""
    owners = {}
    try:
        out = subprocess.run(["dpkg-query", "-S", *sorted({str(p) for p in paths})],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            pkgs, _, file = line.partition(": ")
            owners[file.strip()] = pkgs.split(",")[0].strip()
        names = sorted(set(owners.values()))
        out = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version}\n", *names],
                             capture_output=True, text=True).stdout
        versions = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        return {f: f"{p.split(':')[0]} {versions.get(p, '?')}" for f, p in owners.items()}
    except FileNotFoundError:  # not a Debian system
        return {}


def render(chosen, owners, doc_root, what):
    text = "".join(s + "\n" for s, _, _ in chosen)
    header = [
        f"# Sources of {what}, line for line: Debian package, version, document under {doc_root}.",
        "# Written by tools/make_minilm_sentences.py; the documents themselves are not committed.",
    ]
    rows = []
    for _, pkg, path in chosen:
        owner = owners.get(str(path), f"{pkg} ?")
        rows.append(f"{owner} {path.relative_to(doc_root)}")
    return text, "".join(line + "\n" for line in header + rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doc-root", type=Path, default=Path("/usr/share/doc"))
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT, help="evaluation sentences (default 256)")
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    ap.add_argument("--stats", action="store_true")
    args = ap.parse_args()

    if not args.doc_root.is_dir():
        sys.exit(f"error: {args.doc_root} does not exist (not a Debian-like system?)")
    found, n_files = collect(args.doc_root)
    total = CALIBRATION_COUNT + args.count + GPTQ_CALIBRATION_COUNT
    chosen = select(found, total)
    if len(chosen) < total:
        sys.exit(f"error: only {len(chosen)} qualifying sentences under {args.doc_root} "
                 f"({len(found)} before the per-file/per-package caps); need {total}. "
                 "This machine's documentation lacks prose; install documentation packages or lower --count.")
    calibration = chosen[:CALIBRATION_COUNT]
    evaluation = chosen[CALIBRATION_COUNT:CALIBRATION_COUNT + args.count]
    gptq_calibration = chosen[CALIBRATION_COUNT + args.count:]
    owners = owning_packages([p for _, _, p in chosen])
    sent_txt, sent_src = render(evaluation, owners, args.doc_root, "sentences.txt")
    cal_txt, cal_src = render(calibration, owners, args.doc_root, "calibration.txt")
    gptq_txt, gptq_src = render(gptq_calibration, owners, args.doc_root, "gptq_calibration.txt")
    outputs = {"sentences.txt": sent_txt, "sentences.sources.txt": sent_src,
               "calibration.txt": cal_txt, "calibration.sources.txt": cal_src,
               "gptq_calibration.txt": gptq_txt, "gptq_calibration.sources.txt": gptq_src}

    if args.stats:
        pkgs = Counter(pkg for _, pkg, _ in chosen)
        print(f"{n_files} documents read, {len(found)} distinct qualifying sentences, "
              f"{len(chosen)} chosen from {len(pkgs)} packages and {len({p for _, _, p in chosen})} documents")
        print("per package:", ", ".join(f"{p} {n}" for p, n in pkgs.most_common()))

    if args.check:
        bad = []
        for name, content in outputs.items():
            path = args.out_dir / name
            if not path.is_file() or path.read_text(encoding="utf-8") != content:
                bad.append(name)
        if bad:
            print(f"differs from a fresh selection: {', '.join(bad)} (in {args.out_dir})")
            sys.exit(1)
        print(f"ok: {', '.join(outputs)} in {args.out_dir} match a fresh selection")
        return

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in outputs.items():
        with open(args.out_dir / name, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
    print(f"wrote {len(evaluation)} sentences to {args.out_dir / 'sentences.txt'} and "
          f"{len(calibration)} to {args.out_dir / 'calibration.txt'} and {len(gptq_calibration)} to "
          f"{args.out_dir / 'gptq_calibration.txt'} (+ .sources.txt sidecars)")


if __name__ == "__main__":
    main()
