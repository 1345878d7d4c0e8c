#!/usr/bin/env python3
"""Prints the oracle table of tests/nn/test_fnmatch.cpp: {pattern, name, expected} rows where
`expected` is Python's own `fnmatch.fnmatchcase(name, pattern)` (what optimum-quanto's
`quantize(include=..., exclude=...)` calls through `fnmatch.fnmatch`, the same on POSIX).

The rows cover the module names and patterns of optimum-quanto's
test/quantize/test_quantize_patterns.py, typical transformer names, hand-picked edge cases of
CPython's translation (sets, negation, ranges, `]` first, unclosed `[`, reversed ranges, no
escaping), a few non-ASCII bytes (matched with bytes arguments, so byte values order the
ranges), and random patterns over a small alphabet. The random part is seeded, so the output is
reproducible for a given CPython; it was generated with CPython 3.11.

    python3 tools/make_fnmatch_cases.py > /tmp/cases.inc   # then paste into the test
"""
import fnmatch
import random
import sys

rows = []
seen = set()


def add(pattern, name):
    """Records one row; `pattern` and `name` are both str (ASCII) or both bytes."""
    key = (pattern, name)
    if key in seen:
        return
    seen.add(key)
    expected = fnmatch.fnmatchcase(name, pattern)
    if isinstance(pattern, str):
        # ASCII text matches the same as its bytes: the C++ side only ever sees bytes
        assert expected == fnmatch.fnmatchcase(name.encode(), pattern.encode()), key
        pattern, name = pattern.encode(), name.encode()
    rows.append((pattern, name, expected))


def cross(patterns, names):
    for pattern in patterns:
        for name in names:
            add(pattern, name)


# optimum-quanto test/quantize/test_quantize_patterns.py: ClassificationModel's named_modules()
# ("" is the root) matched against each leaf name and f"{parent}*" for each parent.
quanto_names = ["", "model", "model.input_layer", "model.mid_layer", "model.output_layer", "lm_head"]
quanto_patterns = ["model.input_layer", "model.mid_layer", "model.output_layer", "lm_head", "model*",
                   "model.*", "*_layer", "*put*", "*", "lm_head*", "*.mid_layer", "model.*_layer"]
cross(quanto_patterns, quanto_names)

# A small MLP and transformer-style names.
model_names = ["model", "model.linear1", "model.linear2", "model.linear10", "model.relu",
               "model.relu.linear1", "linear1", "encoder.layer.0.attention.query",
               "encoder.layer.0.attention.key", "encoder.layer.11.attention.self.value",
               "encoder.layer.3.output.dense", "decoder.lm_head", "lm_head"]
model_patterns = ["model*", "*linear*", "model.linear?", "model.linear[12]", "model.linear[!1]",
                  "model.linear[0-9]", "model.linear[0-9]*", "*.relu", "*relu*", "model.*.linear1",
                  "*attention*", "encoder.layer.?.attention.*", "encoder.layer.[0-9].*",
                  "encoder.layer.*.attention.query", "*.query", "*lm_head", "lm_head", "*.dense",
                  "encoder.*.self.*", "encoder.layer.??.*", "*.[kq]*", "*[!0-9].attention.*"]
cross(model_patterns, model_names)

# Hand-picked edge cases of CPython's translation (probed below, once instance() exists).
edge_patterns = [
    "", "*", "**", "***", "?", "??", "*?", "?*", "*?*", "a*", "*a", "*a*", "a*b", "a?b", "a**b",
    "a*b*c", "?a", "a?", "a.b", "a.*", "*.b", ".", "..", "*.*",
    # sets, negation, ranges
    "[ab]", "[!ab]", "[a-c]", "[!a-c]", "[a-a]", "[ab]*", "*[ab]", "[a][b]", "[?]", "[*]", "[.]",
    "[a-cx-z]", "[!a-cx-z]", "[ab-]", "[a-]", "[-a]", "[!-a]", "[!a-]", "[--a]", "[a--]", "[---]",
    "[a-b-c]", "[a-bc-d]", "[a-z-0]", "[!]", "[!]]", "[!]a]", "[]]", "[]a]", "[]-a]", "[!]-a]",
    "[]", "[]]]", "[!]]]", "[^a]", "[!^]", "[^]", "[[]", "[[a]", "[a[]", "[[:alpha:]]", "[&&]",
    "[a&&b]", "[|~]", "[a||b]", "[~~]", "[!!]", "[a!]", "[!a!]",
    # reversed ranges: dropped with both ends; CPython's leftovers can negate or match anything
    "[z-a]", "[!z-a]", "[z-ab]", "[bz-a]", "[z-a!]", "[z-a!b]", "[z-a!-#]", "[z-a^b]", "[z-a[]",
    "[b-a-c]", "[c-ab-a]", "[a-bz-a]", "[z-aa-b]", "[!z-aa]", "[]-!x]", "[!]-!]", "[!]-!a]",
    "[.-a]", "[a-.]",
    # unclosed brackets are literal `[`
    "[", "[!", "[a", "[!a", "[a-", "a[", "*[", "[*", "[?", "[]", "[!]", "[[", "[][", "a[b", "[a*",
    # no escaping: a backslash is just a character
    "\\", "\\*", "\\?", "a\\b", "*\\", "[\\]", "[!\\]", "[\\-a]", "[a-\\]", "\\[a]", "[\\]]",
]

# Newlines: `*` and `?` cross them ("(?s:...)"), and the end is "\Z", not "$".
cross(["a?b", "a*b", "*", "?", "a", "a*", "[!a]", "[\n]"], ["a\nb", "a\n", "\n", "a"])

# Bytes above 0x7f: ranges order by byte value.
cross([b"[a-\xff]", b"[\x80-\xff]", b"[!\x80-\xff]", b"\xe9*", b"*\xff", b"?", b"[\xff-a]"],
      [b"a", b"z", b"\x7f", b"\x80", b"\xe9", b"\xff", b"\xe9t\xe9"])

# Random patterns over a small alphabet, each against random names and names built to fit.
rng = random.Random(20240517)
alphabet = "ab.*?[]!-"


def random_pattern():
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def random_name(length):
    return "".join(rng.choice("ab.[]!-") for _ in range(length))


def instance(pattern):
    """A name likely to match: wildcards filled in at random, each set replaced by a member."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(random_name(rng.randint(0, 3)))
        elif c == "?":
            out.append(random_name(1))
        elif c == "[":
            # a character that the one-character element starting here accepts, if any
            j = i + 1
            if pattern[j:j + 1] == "!":
                j += 1
            if pattern[j:j + 1] == "]":
                j += 1
            end = pattern.find("]", j)
            piece = pattern[i:end + 1] if end >= 0 else "["
            fits = [ch for ch in map(chr, range(0x20, 0x7F)) if fnmatch.fnmatchcase(ch, piece)]
            out.append(rng.choice(fits) if fits else "a")
            i += len(piece) - 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


# Each edge pattern against common probes, every character it holds (on its own), itself taken
# literally, and a name built to fit it.
for pattern in edge_patterns:
    probes = ["", "a", "b", "ab", "aa", "a.b", "x", "-", "!", "]", "[", pattern, instance(pattern)]
    probes += sorted(set(pattern))
    for name in probes:
        add(pattern, name)

random_patterns = []
while len(random_patterns) < 200:
    pattern = random_pattern()
    if pattern not in random_patterns:
        random_patterns.append(pattern)
for pattern in random_patterns:
    add(pattern, instance(pattern))
    for _ in range(2):
        add(pattern, random_name(rng.randint(0, 6)))


def cpp_string(data):
    """A C++ string literal for `data`, with octal escapes (at most 3 digits, never greedy)."""
    out = []
    previous = None
    for byte in data:
        ch = chr(byte)
        if ch in "\\\"":
            out.append("\\" + ch)
        elif ch == "?" and previous == "?":
            out.append("\\?")  # "??x" would draw GCC's -Wtrigraphs
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append("\\%03o" % byte)
        previous = ch
    return '"' + "".join(out) + '"'


print(f"    // {len(rows)} cases, generated by tools/make_fnmatch_cases.py with Python {sys.version.split()[0]}")
for pattern, name, expected in rows:
    print(f"    {{{cpp_string(pattern)}, {cpp_string(name)}, {'true' if expected else 'false'}}},")
