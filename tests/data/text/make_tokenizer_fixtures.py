#!/usr/bin/env python3
"""Generate the tokenizer fixtures of tests/text/test_tokenizer.cpp with Hugging Face `tokenizers`.

Trains two small byte-level BPE tokenizers on a fixed corpus, one per pre-tokenizer style, and
writes four tokenizer.json files beside this script:
  gpt2.json         ByteLevel(add_prefix_space=False) with its GPT-2 regex; <|endoftext|> and
                    <mask> (special, lstrip) and the non-special normalized "@@quanto@@"
  gpt2_prefix.json  the same with add_prefix_space=True
  llama3.json       Sequence[Split(Llama 3 regex, Isolated), ByteLevel(use_regex=False)],
                    ignore_merges, <|begin_of_text|> before the text (TemplateProcessing),
                    Llama 3's other special tokens
  qwen2.json        llama3.json with Qwen2's regex (one digit at a time), no ignore_merges
and cases.json: the texts (ASCII prose, code, long numbers, contractions, runs of spaces and
newlines, accents, CJK, emoji, combining marks, rare but valid UTF-8, special tokens inside text,
and 200 seeded random strings of those characters) with the ids `tokenizers` gives each
without special tokens (with them, Llama 3's and Qwen2's have <|begin_of_text|> before: checked
here), and the text it decodes them to (skip_special_tokens=False) where that is not the text.

It also checks what text/pretokenize.hpp assumes of Oniguruma's case folding: the only letters
other than ASCII that the case-insensitive contractions of Llama 3 accept are U+017F for 's'.

Usage: python3 tests/data/text/make_tokenizer_fixtures.py   (tokenizers 0.23.3 wrote the files)
"""
import json
import random
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = Path(__file__).resolve().parent
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")

TEXTS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "It's what they'll say: we're sure you've seen it, I'm told, he'd know.",
    "IT'S LOUD, THEY'LL HEAR, WE'RE HERE, YOU'VE GOT IT, I'M IN, HE'D GO.",
    "don't won't can't shouldn't y'all 'tis o'clock rock'n'roll",
    "def quantize(w, bits=4):\n    scale = w.abs().max() / (2 ** (bits - 1) - 1)\n    return (w / scale).round()\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot\n",
    "{\"key\": [1, 2.5, -3e10], \"ok\": true}",
    "3.14159265358979 2718281828 1234567890123456789 0 00 007 1,000,000 42nd",
    "    four leading spaces and trailing   ",
    "tabs\tand\t\ttabs\n\nnew\r\nlines\r\r\n\n\n  \n end",
    "  \n\t \u00a0 \u3000 \u2028 x",
    "café naïve résumé façade Ærøskøbing Straße",
    "Ελληνικά κείμενα, русский текст, עברית, العربية ٣٤٥",
    "漢字とひらがなとカタカナ。中文句子，还有标点！한국어 문장",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and ⚡",
    "e\u0301 a\u0308 n\u0303 combining: \u0301\u0302 alone",
    "\u200b\u200d\ufeff zero widths \ufffd replacement \U0010fffd max \ue000 private",
    "Ⅻ ½ ² ³ ① numbers of other kinds ߁߂",
    "\x00 nul \x01\x7f control \x1b[0m",
    "<|begin_of_text|>Hello<|eot_id|>",
    "before <|endoftext|> after<|endoftext|><|endoftext|>",
    "a <mask> b   <mask>c<mask>",
    "this @@quanto@@ is added, @@quanto@@@@quanto@@ twice",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|begin_of_tex <|eot_id <|  |> partial specials",
    "'s 'S 'ſ 'ſt 'RE 'Ve 'LL 'lL 'd 'D x's",
    "https://example.org/path?q=1&r=2#frag user@example.com",
    "Mixed123numbers456and789letters 12ab 1.2.3",
    "a" * 300,
    "ab" * 200 + " " + "1" * 130,
    " " * 50 + "x" + "\n" * 20 + "y" + "\t" * 10,
]

CORPUS = [
    "Quantization maps each weight to one of a few levels, and a scale brings it back.",
    "A calibration pass runs a handful of sentences through the model and records the largest activation.",
    "The tokenizer splits text into pieces, and byte pair encoding merges the most frequent pairs.",
    "It's the merges' order that decides: the lowest rank is merged first, then the next one.",
    "Numbers such as 2048, 4096 and 65536 appear often in code and in papers about models.",
    "def forward(self, x):\n    return self.linear(x) + self.bias\n",
    "Ça va? Très bien, merci. Ünïcödé text is fine too. Ελληνικά και русский.",
    "中文文本和日本語のテキストも少し含まれています。",
    "We're sure they'll like it; you've seen how I'm working, and she'd agree.",
]


def random_texts(n, seed=19):
    pool = list(" \n\r\t'sStTmMdDrReEvVlLſ0123456789aéжΩ漢字😀.,!?-_<|>()") + [
        "\u00a0", "\u3000", "\u0301", "\u200d", "٣", "Ⅻ", "½", "'re", "'ll", "<|eot_id|>",
        "<|endoftext|>", "<mask>", "@@quanto@@", "  ", "\n\n", " 12345", "'S",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def train(pre_tokenizer, specials, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3 + TEXTS, trainer)
    return tok


def check_case_folding():
    pt = pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated")
    pieces = lambda s: [p for p, _ in pt.pre_tokenize_str(s)]  # noqa: E731
    letters = [chr(c) for c in range(0x80, 0x110000)
               if not 0xD800 <= c <= 0xDFFF and pieces("x" + chr(c)) == ["x" + chr(c)]]
    found = {}
    for form, make in {"s": lambda c: "'" + c, "re": lambda c: "'" + c + "e", "e": lambda c: "'r" + c,
                       "ll": lambda c: "'" + c + "l", "l": lambda c: "'l" + c}.items():
        found[form] = [c for c in letters if pieces(make(c) + "x") == [make(c), "x"]]
    assert found == {"s": ["\u017f"], "re": [], "e": [], "ll": [], "l": []}, found


def main():
    check_case_folding()
    gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"], False)
    gpt2.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False)])
    gpt2.add_tokens([AddedToken("@@quanto@@", normalized=True)])
    gpt2.post_processor = processors.ByteLevel(trim_offsets=False)

    llama_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eot_id|>"]
    llama3 = train(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                   llama_specials, True)
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
                                      special_tokens=[("<|begin_of_text|>", llama3.token_to_id("<|begin_of_text|>"))]),
    ])

    files = {"gpt2": json.loads(gpt2.to_str()), "llama3": json.loads(llama3.to_str())}
    files["gpt2_prefix"] = json.loads(gpt2.to_str())
    files["gpt2_prefix"]["pre_tokenizer"]["add_prefix_space"] = True
    files["qwen2"] = json.loads(llama3.to_str())
    files["qwen2"]["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN2_RE
    files["qwen2"]["model"]["ignore_merges"] = False

    texts = TEXTS + random_texts(200)
    cases = {"tokenizers_version": tokenizers.__version__, "texts": texts, "ids": {}, "decoded": {}}
    for name, j in files.items():
        text = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
        (HERE / f"{name}.json").write_text(text, encoding="utf-8")
        tok = Tokenizer.from_str(text)
        plain = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        bos = [tok.token_to_id("<|begin_of_text|>")] if name in ("llama3", "qwen2") else []
        for t, ids in zip(texts, plain):  # the C++ test checks the template the same way
            assert tok.encode(t).ids == bos + ids, repr(t)
        # decode(encode(t)) is t but where <mask>'s lstrip took the spaces before it, and with the
        # prefix spaces of gpt2_prefix: those decoded texts are written, null for the others
        decoded = [tok.decode(ids, skip_special_tokens=False) for ids in plain]
        for t, d in zip(texts, decoded):
            assert d == t or name == "gpt2_prefix" or ("<mask>" in t and name == "gpt2"), repr(t)
        cases["ids"][name] = plain
        cases["decoded"][name] = [None if d == t else d for t, d in zip(texts, decoded)]
    (HERE / "cases.json").write_text(json.dumps(cases, ensure_ascii=True, separators=(",", ":")), encoding="utf-8")
    print("wrote", ", ".join(sorted(files)), "and cases.json")


if __name__ == "__main__":
    main()
