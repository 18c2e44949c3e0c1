#!/usr/bin/env python3
"""Reference ids for Myopia's GPT-2 BPE tokenizer (docs/DESIGN.md §6), made with tiktoken.

The GPT-2 files come from Myopia's asset cache. Fetch them first with
`myopia fetch gpt2 gpt2-tiktoken tinyshakespeare`. This script does not download anything.
tiktoken is built from the cached `gpt2.tiktoken` ranks file, the GPT-2 pattern of
`tiktoken_ext/openai_public.py` and `<|endoftext|>` = 50256.

Writes Tests/Fixtures/tokenizer/gpt2_reference.json (or --out):

  samples         [{name, text, ids, ids_special}] with
                    ids          enc.encode_ordinary(text) (`<|endoftext|>` is plain text)
                    ids_special  enc.encode(text, allowed_special="all")
                  The texts cover contractions (also upper-case 'S), numbers in several scripts,
                  runs of spaces, tabs and newlines, trailing spaces, Unicode whitespace, CJK,
                  Cyrillic, Arabic, Devanagari, emoji with ZWJ sequences and flags, combining
                  marks, control characters, `<|endoftext|>` inside text, long pieces and a
                  seeded random mix.
  decode_cases    [{name, ids, text}] token sequences whose bytes are not valid UTF-8, and
                  text = enc.decode(ids) (errors="replace": each bad part becomes U+FFFD).
  tinyshakespeare {bytes, count, sha256_int32le, first_ids}: all of input.txt with
                  encode_ordinary. sha256_int32le is the sha256 of the ids as little-endian int32.
  character_classes
                  {letter, number, space}: [[start, end), ...] code point ranges, tiktoken's classes
                  for \p{L}, \p{N} and \s over all of Unicode (everything else is "other").
                  tiktoken 0.14's regex uses Unicode 16.0 tables.
  source          the sha256 of the files and the library versions used.

When transformers is installed, every sample is also encoded with
`GPT2Tokenizer(vocab=vocab.json, merges=merges.txt)`, and the script exits 1 if those ids differ.
The merges route has to agree with the ranks route. The output is deterministic.

Usage (from the repo root):
  /opt/refenv/bin/python tools/reference/tokenizer_reference.py [--assets DIR] [--out FILE]
  (DIR defaults to $MYOPIA_HOME, else ~/.cache/myopia)
"""

import argparse
import hashlib
import json
import os
import random
import struct
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "tokenizer", "gpt2_reference.json")

# tiktoken_ext/openai_public.py, r50k_pat_str; the same as GPT-2's original
# 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
ENDOFTEXT = "<|endoftext|>"

SAMPLES = [
    ("hello", "Hello world"),
    ("empty", ""),
    ("contractions",
     "I'm sure he's said they've we'll you'd it's don't can't. I'M SURE HE'S SAID THEY'VE WE'LL "
     "YOU'D IT'S DON'T. 's 'S 't 're 've 'm 'll 'd ''s '''tis rock'n'roll O'Neill's James's "
     "the dogs' bones 'quoted' it’s (curly) 'S'T'RE"),
    ("numbers",
     "1 12 123 1234 12345 123456789 3.14159 -42 +7 1,000,000 1e10 0x1F 2023-11-21 10:45pm "
     "$19.99 50% 42nd 1st 007 ٣٤٥ १२३ ① ½ Ⅻ ²³ ١٢ 一二三"),
    ("spaces", "a b  c   d    e     f      g\n"),
    ("trailing_spaces", "trailing spaces   "),
    ("leading_spaces", "   leading spaces"),
    ("only_spaces", "     "),
    ("one_space", " "),
    ("newlines", "one\ntwo\n\nthree\n\n\nfour\n \n five \n\n"),
    ("tabs", "tabs\tand\t\tmixed \t \n\t whitespace \t\tx\t"),
    ("crlf", "Windows\r\nline\r\n\r\nendings\r\n"),
    ("unicode_whitespace",
     "nbsp\u00a0here em\u2003space ideo\u3000space nel\u0085line ls\u2028ps\u2029vt\u000bff\u000cend "
     "\u00a0\u00a0x \u2003 y\u3000\u3000"),
    ("not_whitespace",
     "fs\u001cgs\u001drs\u001eus\u001f zwsp\u200bjoin zwj\u200dzwnj\u200c bom\ufeff mvs\u180e "
     "nul\u0000soh\u0001del\u007f"),
    ("code",
     "def f(x):\n    return x**2  # square\n\n\tif (a&&b) { c->d; } // done\n"
     "    for i in range(10):\n        print(f\"{i:>3}\")\n"),
    ("punctuation",
     "Wait... what?!?! --- (yes) [no] {maybe} \"quoted\" «guillemets» — dashes – ‘curly’ “double” "
     "... !!! ??? ,,, ;; :: @@ ## $$ %% ^^ && ** __ ++ == ~~ `` || \\\\ // <> ..."),
    ("symbols", "∑ ∫ √ ≤ ≥ ≠ ∞ € £ ¥ $ © ® ™ ° ± × ÷ µ ß ẞ ﬁ ﬂ ♠ ♥ ★ → ⇒ ∀x∃y"),
    ("letters_digits", "abc123def 4567ghi x86_64 COVID-19 GPT-2 H2O mp3 1a2b3c A1B2C3 τ2π"),
    ("cjk", "漢字とひらがなとカタカナ。中文测试，你好世界！日本語のテキストです。한국어 텍스트입니다."),
    ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю. ПРИВЕТ, Мир!"),
    ("arabic", "مرحبا بالعالم! هذا اختبار. اَلْعَرَبِيَّةُ"),
    ("hebrew", "שלום עולם, זה מבחן."),
    ("devanagari", "नमस्ते दुनिया, यह एक परीक्षण है। हिन्दी"),
    ("thai_greek", "สวัสดีชาวโลก Καλημέρα κόσμε"),
    ("emoji",
     "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇫🇷 😀😃😄 1️⃣ #️⃣ 🧑🏿‍🚀 hi👋there 👩‍💻code"),
    ("combining",
     "e\u0301 café cafe\u0301 n\u0303 a\u0308\u0304 Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d "
     "\u0301leading mark x\u20dd"),
    ("astral_letters", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𐍈𐌰𐌹 𝟙𝟚𝟛 𠜎𠜱"),
    ("letter_categories", "ǅungla ǈ ʰʲ ˀ ⅰⅱⅲ Ⅳ ¹²³ ¼ ª º ǆ"),
    ("special_in_text",
     "Hello<|endoftext|>world <|endoftext|> again<|endoftext|><|endoftext|> <|endoftext| "
     "<|endoftext|>\n"),
    ("special_alone", "<|endoftext|>"),
    ("special_edges", "<|endoftext|>  <|endoftext|>   x<|endoftext|>"),
    ("long_word", "abcdefghij" * 50),
    ("long_spaces", " " * 200 + "word" + " " * 3 + "\n" * 40 + "x"),
    ("long_punctuation", "!?" * 150 + " " + "=" * 100),
    ("long_digits", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280"),
    ("repeated_word", " the" * 60),
    # U+1C89 (Unicode 16.0) is a letter to tiktoken 0.14; U+0C5C and U+10940 (17.0) are not yet.
    ("unicode_versions", "a\u1c89b x\u0c5cy \U00010940\U00010941z 7\u0c5c"),
]

# Fragments for the seeded random mix: every kind of character the scanner distinguishes.
FRAGMENTS = [
    "the", "The", "THE", " ", "  ", "   ", "\n", "\n\n", "\t", " \t", "\r\n", "'s", "'S", "'ll", "'", "''",
    "0", "42", "3.5", ".", ",", "!", "?", "...", "-", "—", "(", ")", "\"", "é", "e\u0301", "ü", "ß",
    "漢", "字", "한", "ж", "щ", "ا", "ب", "न", "\u094d", "ि", "👍", "\u200d", "🏽", "❤", "\ufe0f",
    "\u00a0", "\u3000", "\u2028", "\u0085", "\u001c", "\u200b", "½", "٣", "𝔘", "€", "∑", "_", "@",
    "<|endoftext|>", "<|", "|>", "x", "y", "z", "A", "Q",
]


def random_mix(seed, pieces):
    rng = random.Random(seed)
    return "".join(rng.choice(FRAGMENTS) for _ in range(pieces))


# Byte sequences that are not valid UTF-8, written as byte tokens (and some valid text around them).
DECODE_CASES = [
    ("lone_continuation", [b"\x80"]),
    ("truncated_2", [b"\xc3"]),
    ("truncated_3", [b"\xe2", b"\x82"]),
    ("truncated_4", [b"\xf0", b"\x9f", b"\x98"]),
    ("overlong", [b"\xc0", b"\xaf"]),
    ("surrogate", [b"\xed", b"\xa0", b"\x80"]),
    ("above_max", [b"\xf4", b"\x90", b"\x80", b"\x80"]),
    ("invalid_lead", [b"\xf5", b"\xff", b"\xfe"]),
    ("embedded", [b"abc", b"\xe2", b"\x82", b"def"]),
    ("bad_then_ascii", [b"\xe2", b"A", b"\xc3", b"\xa9"]),
    ("split_emoji", [b"\xf0\x9f", b"\x91", b"x"]),
]


def compact_json(result):
    """Sorted keys, ASCII only (so no tool can renormalise the texts); one list item per line."""
    def one(value):
        return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))

    lines = ["{"]
    keys = sorted(result)
    for i, key in enumerate(keys):
        value, comma = result[key], "," if i + 1 < len(keys) else ""
        if isinstance(value, list):
            items = [" " + one(item) for item in value]
            lines.append(f"{one(key)}:[")
            lines.append(",\n".join(items))
            lines.append(f"]{comma}")
        elif isinstance(value, dict):
            inner = sorted(value)
            lines.append(f"{one(key)}:{{")
            lines.append(",\n".join(f" {one(k)}:{one(value[k])}" for k in inner))
            lines.append(f"}}{comma}")
        else:
            lines.append(f"{one(key)}:{one(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def character_classes(pattern):
    """tiktoken's class of every code point, as {letter, number, space}: [[start, end), ...].

    Probed through tiktoken itself: an Encoding whose vocabulary holds "a"+c, "1"+c and c+"!"
    encodes one of them as a single token only when the pattern keeps it in one piece, i.e. when c
    is a letter, a number or other, respectively; otherwise c is whitespace.
    """
    classes = bytearray(b"o" * 0x110000)
    points = [v for v in range(0x110000) if not 0xD800 <= v <= 0xDFFF]
    chunk = 60000
    for start in range(0, len(points), chunk):
        part = points[start:start + chunk]
        ranks = {bytes([b]): b for b in range(256)}
        for v in part:
            for probe in ("a" + chr(v), "1" + chr(v), chr(v) + "!"):
                if probe.encode() not in ranks:   # probes can coincide: "a" + c for c = "!" is c + "!" for c = "a"
                    ranks[probe.encode()] = len(ranks)
        enc = tiktoken.Encoding(name="probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        for v in part:
            c = chr(v)
            if c == " ":
                classes[v] = ord("s")   # " !" is one piece only because of the optional space in " ?[^...]+"
            elif len(enc.encode_ordinary("a" + c)) == 1:
                classes[v] = ord("l")
            elif len(enc.encode_ordinary("1" + c)) == 1:
                classes[v] = ord("n")
            elif len(enc.encode_ordinary(c + "!")) != 1:
                classes[v] = ord("s")
    out = {"letter": [], "number": [], "space": []}
    names = {ord("l"): "letter", ord("n"): "number", ord("s"): "space"}
    v = 0
    while v < 0x110000:
        end = v + 1
        while end < 0x110000 and classes[end] == classes[v]:
            end += 1
        if classes[v] in names:
            out[names[classes[v]]].append([v, end])
        v = end
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_home = os.environ.get("MYOPIA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "myopia")
    parser.add_argument("--assets", default=default_home, help="Myopia's asset folder (MYOPIA_HOME)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    ranks_path = os.path.join(args.assets, "gpt2-tiktoken", "gpt2.tiktoken")
    vocab_path = os.path.join(args.assets, "gpt2", "vocab.json")
    merges_path = os.path.join(args.assets, "gpt2", "merges.txt")
    shakespeare_path = os.path.join(args.assets, "tinyshakespeare", "input.txt")
    for p in (ranks_path, vocab_path, merges_path, shakespeare_path):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: run `myopia fetch gpt2 gpt2-tiktoken tinyshakespeare` (or pass --assets)")

    enc = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(ranks_path),
                            special_tokens={ENDOFTEXT: 50256})
    assert enc.n_vocab == 50257
    assert enc.encode("Hello world") == [15496, 995]

    samples = SAMPLES + [(f"random_mix_{seed}", random_mix(seed, 1500)) for seed in (1, 2)]
    out_samples = []
    for name, text in samples:
        ids = enc.encode_ordinary(text)
        ids_special = enc.encode(text, allowed_special="all")
        assert enc.decode(ids) == text and enc.decode(ids_special) == text, name
        out_samples.append({"name": name, "text": text, "ids": ids, "ids_special": ids_special})

    # Cross-check: the vocab.json + merges.txt route (Hugging Face) gives the same ids.
    hf_version = None
    try:
        import transformers
        from transformers import GPT2Tokenizer
    except ImportError:
        print("transformers not installed: skipping the vocab.json + merges.txt cross-check", file=sys.stderr)
    else:
        hf_version = transformers.__version__
        hf = GPT2Tokenizer(vocab=vocab_path, merges=merges_path)
        failures = 0
        for s in out_samples:
            # HF always splits out added tokens such as <|endoftext|>, so compare with ids_special.
            got = hf.encode(s["text"])
            if got != s["ids_special"]:
                failures += 1
                print(f"HF and tiktoken differ on sample {s['name']}: {got[:20]} vs {s['ids_special'][:20]}", file=sys.stderr)
        if failures:
            sys.exit(1)

    decode_cases = []
    for name, parts in DECODE_CASES:
        ids = [enc.encode_single_token(p) for p in parts]
        raw = b"".join(parts)
        assert enc.decode_bytes(ids) == raw
        text = enc.decode(ids)  # errors="replace"
        assert text == raw.decode("utf-8", errors="replace")
        decode_cases.append({"name": name, "ids": ids, "text": text})

    with open(shakespeare_path, "rb") as f:   # bytes: text mode would turn "\r\n" into "\n"
        shakespeare = f.read().decode("utf-8")
    shakespeare_ids = enc.encode_ordinary(shakespeare)
    packed = struct.pack(f"<{len(shakespeare_ids)}i", *shakespeare_ids)

    result = {
        "source": {
            "pattern": GPT2_PATTERN,
            "special_tokens": {ENDOFTEXT: 50256},
            "gpt2.tiktoken_sha256": sha256_file(ranks_path),
            "vocab.json_sha256": sha256_file(vocab_path),
            "merges.txt_sha256": sha256_file(merges_path),
            "tiktoken": tiktoken.__version__,
            "transformers": hf_version,
            "python": sys.version.split()[0],
        },
        "samples": out_samples,
        "character_classes": character_classes(GPT2_PATTERN),
        "decode_cases": decode_cases,
        "tinyshakespeare": {
            "bytes": len(shakespeare.encode("utf-8")),
            "count": len(shakespeare_ids),
            "sha256_int32le": hashlib.sha256(packed).hexdigest(),
            "first_ids": shakespeare_ids[:64],
        },
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="ascii") as f:
        f.write(compact_json(result))
    total = sum(len(s["text"].encode("utf-8")) for s in out_samples)
    print(f"wrote {args.out}: {len(out_samples)} samples ({total} bytes of text), "
          f"{len(decode_cases)} decode cases, tiny-shakespeare {len(shakespeare_ids)} ids")


if __name__ == "__main__":
    main()
