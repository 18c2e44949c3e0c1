#!/usr/bin/env python3
"""Reference ids for the tokenizer embedded in the SmolLM2-135M-Instruct GGUF (docs/DESIGN.md §6).

The GGUF comes from Myopia's asset cache: fetch it first with `myopia fetch smollm2-135m
tinyshakespeare`. This script does not download anything.

SmolLM2's own tokenizer.json (Hugging Face) pre-tokenizes with
    Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false, use_regex=true)]
i.e. every number character (Rust's char::is_numeric) is a piece by itself, and each stretch
between them is cut by GPT-2's regex. llama.cpp writes this as tokenizer.ggml.pre = "smollm" and
splits the same way (regexes "\\p{N}", then GPT-2's).

transformers' GGUF loader (AutoTokenizer.from_pretrained(folder, gguf_file=...)) rebuilds the
tokenizer as plain ByteLevel: it drops the Digits step. No token joins a number to anything else
(no "12", no " 1"), so the ids differ only where whitespace meets a number ("a  1": GPT-2's regex
gives "a", " ", " 1"; Digits first gives "a", "  ", "1", and "  " is one token). So the reference
is built here with the `tokenizers` library directly from the GGUF's tokens, merges and token
types, with SmolLM2's pre-tokenizer. The transformers route is still run: the script checks that
its ids are those of the same tables under ByteLevel alone, and that every sample where they differ
from the reference has whitespace followed by a number; those samples are recorded.

Writes Tests/Fixtures/tokenizer/smollm2_reference.json (or --out):

  samples         [{name, text, ids, ids_special}] with
                    ids          the tokenizer without added tokens (control tokens are plain text)
                    ids_special  the tokenizer with the CONTROL tokens added as special tokens
                  neither adds BOS/EOS. The texts: contractions, numbers (12345, 3.14, dates, other
                  scripts' digits), whitespace before numbers, runs of spaces/newlines, code, CJK,
                  Cyrillic, Arabic, Devanagari, emoji, the chat template's tokens, bytes that have
                  no token (left out: the ids decode to the text without them), a seeded mix.
  bytes_without_token
                  the bytes whose byte-level character is not in the vocabulary.
  tinyshakespeare {bytes, count, sha256_int32le, first_ids}: all of input.txt, ids without added
                  tokens. sha256_int32le is the sha256 of the ids as little-endian int32.
  gguf            what the GGUF metadata says: model, pre, vocab size, merges, control tokens,
                  bos/eos/unk/pad ids.
  digits_beyond_regex_numbers
                  code points that Digits isolates (char::is_numeric, Unicode 17 in tokenizers
                  0.23) but that GPT-2's regex (\\p{N}, Unicode 16) calls "other".
  transformers_gguf
                  {pre_tokenizer, differs_on, ids}: what transformers' GGUF conversion built, the
                  samples where its ids (control tokens special, no BOS/EOS) differ from
                  ids_special, and its ids for each of those samples (`myopia convert`'s default
                  tokenizer.json must give them).
  source          the sha256 of the GGUF and the library versions used.

Usage (from the repo root):
  /opt/refenv/bin/python tools/reference/smollm2_tokenizer_reference.py [--assets DIR] [--out FILE]
  (DIR defaults to $MYOPIA_HOME, else ~/.cache/myopia)
"""

import argparse
import hashlib
import json
import os
import random
import struct
from importlib.metadata import version
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_reference import compact_json, sha256_file  # noqa: E402  (same JSON layout as the GPT-2 fixture)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "tokenizer", "smollm2_reference.json")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTROL = 3  # gguf.TokenType.CONTROL
# The pre_tokenizer of SmolLM2's tokenizer.json (HuggingFaceTB/SmolLM2-135M-Instruct), as written there.
SMOLLM_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}

SAMPLES = [
    ("hello", "Hello world"),
    ("paris", " Paris"),
    ("capital", "The capital of France is"),
    ("capital_answer", "The capital of France is Paris."),
    ("empty", ""),
    ("contractions",
     "I'm sure he's said they've we'll you'd it's don't can't. I'M SURE HE'S SAID THEY'VE WE'LL "
     "YOU'D IT'S DON'T. 's 'S 't 're 've 'm 'll 'd ''s '''tis rock'n'roll O'Neill's it’s"),
    ("numbers",
     "1 12 123 1234 12345 123456789 3.14 3.14159 -42 +7 1,000,000 1e10 0x1F 2023-11-21 10:45pm "
     "$19.99 50% 42nd 1st 007 v1.2.3 192.168.0.1 (555) 123-4567 π≈3.14159265358979"),
    ("numbers_other_scripts", "٣٤٥ ١٢ ۱۲۳ १२३ ৩৪ ๑๒๓ ① ½ ¾ Ⅻ ⅻ ²³ ₁₂ 一二三 ５６７ 𝟙𝟚𝟛"),
    ("space_before_number",
     "a 1 a  1 a   1 x\t1 x\n1 x\n\n1 x \n1 1 2  3   4\n5\n\n6 end 9 "),
    ("number_at_edges", "1abc2 abc3 4 5x 6 7  "),
    ("spaces", "a b  c   d    e     f      g\n"),
    ("trailing_spaces", "trailing spaces   "),
    ("leading_spaces", "   leading spaces"),
    ("only_spaces", "     "),
    ("newlines", "one\ntwo\n\nthree\n\n\nfour\n \n five \n\n"),
    ("tabs_crlf", "tabs\tand\t\tmixed \t \n\t whitespace\r\nWindows\r\n\r\nendings\r\n"),
    ("unicode_whitespace", "nbsp\u00a0here em\u2003space ideo\u3000space \u00a0\u00a01 \u20032"),
    ("code",
     "def f(x):\n    return x**2 + 3.5 * x - 10  # square\n\n\tif (a&&b) { c->d[0] = 42; } // done\n"
     "    for i in range(10):\n        print(f\"{i:>3}\", i * 1000)\n"
     "const int N = 1024;\nfloat a[N][N];\n"),
    ("json", '{"id": 123, "values": [1.5, -2, 3e-4], "name": "x_1"}'),
    ("punctuation",
     "Wait... what?!?! --- (yes) [no] {maybe} \"quoted\" «guillemets» — dashes – ‘curly’ “double” "
     "!!! ??? ,,, ;; :: @@ ## $$ %% ^^ && ** __ ++ == ~~ `` || \\\\ // <> ..."),
    ("symbols", "∑ ∫ √ ≤ ≥ ≠ ∞ € £ ¥ $ © ® ™ ° ± × ÷ µ ß ẞ ﬁ ﬂ ♠ ♥ ★ → ⇒ ∀x∃y"),
    ("letters_digits", "abc123def 4567ghi x86_64 COVID-19 GPT-2 H2O mp3 1a2b3c A1B2C3 τ2π SmolLM2-135M"),
    ("cjk", "漢字とひらがなとカタカナ。中文测试，你好世界！日本語のテキストです。한국어 텍스트입니다. 2024年3月"),
    ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю. ПРИВЕТ, Мир! 100 рублей"),
    ("arabic", "مرحبا بالعالم! هذا اختبار ٢٠٢٤. اَلْعَرَبِيَّةُ"),
    ("devanagari", "नमस्ते दुनिया, यह एक परीक्षण है। हिन्दी २०२४"),
    ("thai_greek_hebrew", "สวัสดีชาวโลก Καλημέρα κόσμε שלום עולם"),
    ("emoji", "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇫🇷 😀😃😄 1️⃣ #️⃣ hi👋there 👩‍💻code 4🎉"),
    ("combining", "e\u0301 café cafe\u0301 n\u0303 a\u0308\u0304 \u0301leading mark x\u20dd"),
    ("chat",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
     "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n"),
    ("special_in_text", "Hello<|endoftext|>world <|endoftext|> again<|im_end|><|im_start|> <|im_end| <repo_name>x"),
    ("long_word", "abcdefghij" * 50),
    ("long_spaces", " " * 200 + "word" + " " * 3 + "\n" * 40 + "x"),
    ("long_digits", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280"),
    ("repeated_word", " the" * 60),
    # 21 bytes have no token (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5-0xFF): the
    # BPE model leaves them out and their neighbours may merge ("!\x04!" is "!!"). No round trip.
    ("bytes_without_token", "!\x04! a\x04b (\x06( \x13\x14\x16\x1d end\x04 \U00040000x \U00080001y \U000ffffd"),
    # U+11DE0 and U+16FF4 are numbers in Unicode 17.0: Digits isolates them, GPT-2's regex (16.0) does not know them.
    ("unicode17_numbers", "x\U00011de0y \U00011de1\U00011de2 \U00016ff4z"),
]

FRAGMENTS = [
    "the", "The", "THE", " ", "  ", "   ", "\n", "\n\n", "\t", " \t", "\r\n", "'s", "'S", "'ll", "'",
    "0", "1", "42", "3.5", "2024", " 7", "  9", ".", ",", "!", "?", "...", "-", "—", "(", ")", "\"", "é",
    "e\u0301", "ü", "漢", "字", "한", "ж", "ا", "न", "\u094d", "👍", "\u200d", "🏽", "❤", "\ufe0f",
    "\u00a0", "\u3000", "½", "٣", "²", "𝔘", "€", "_", "@", "<|im_end|>", "<|endoftext|>", "<|", "|>",
    "x", "y", "A", "Q",
]


def random_mix(seed, pieces):
    rng = random.Random(seed)
    return "".join(rng.choice(FRAGMENTS) for _ in range(pieces))


def bytes_to_unicode():
    """GPT-2's byte -> character table (bytes 33-126, 161-172, 174-255 as themselves, the rest from U+0100)."""
    kept = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in kept:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def build_reference(tokens, merges, control, pre_tokenizer):
    """A BPE tokenizer from the GGUF tables. `control`: [(id, text)] added as special tokens, or []."""
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    if control:
        tok.add_special_tokens([AddedToken(text, special=True, normalized=False) for _, text in control])
        for i, text in control:
            assert tok.token_to_id(text) == i, (text, tok.token_to_id(text), i)
    return tok


def digits_beyond_regex():
    """Code points Digits isolates but GPT-2's regex does not call \\p{N}, probed through tokenizers."""
    digits = pre_tokenizers.Digits(individual_digits=True)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    found = []
    for v in range(0x110000):
        if 0xD800 <= v <= 0xDFFF:
            continue
        c = chr(v)
        if len(digits.pre_tokenize_str("a" + c + "a")) == 3 and len(byte_level.pre_tokenize_str("1" + c)) != 1:
            found.append(v)
    return found


def ids_of(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_home = os.environ.get("MYOPIA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "myopia")
    parser.add_argument("--assets", default=default_home, help="Myopia's asset folder (MYOPIA_HOME)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    folder = os.path.join(args.assets, "smollm2-135m")
    gguf_path = os.path.join(folder, GGUF_NAME)
    shakespeare_path = os.path.join(args.assets, "tinyshakespeare", "input.txt")
    for p in (gguf_path, shakespeare_path):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: run `myopia fetch smollm2-135m tinyshakespeare` (or pass --assets)")

    reader = gguf.GGUFReader(gguf_path)

    def field(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    model, pre = field("tokenizer.ggml.model"), field("tokenizer.ggml.pre")
    if model != "gpt2" or pre != "smollm":
        sys.exit(f"expected tokenizer.ggml.model 'gpt2' and .pre 'smollm', found {model!r}, {pre!r}")
    tokens = field("tokenizer.ggml.tokens")
    merges = field("tokenizer.ggml.merges")
    types = field("tokenizer.ggml.token_type")
    assert len(types) == len(tokens)
    control = [(i, tokens[i]) for i, t in enumerate(types) if t == CONTROL]
    other_types = sorted({int(t) for t in types} - {1, CONTROL})
    if other_types:
        sys.exit(f"token types other than NORMAL and CONTROL: {other_types} (this script does not handle them)")

    smollm_pre = Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": SMOLLM_PRE_TOKENIZER, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "vocab": {}, "merges": []}})).pre_tokenizer
    plain = build_reference(tokens, merges, [], smollm_pre)
    special = build_reference(tokens, merges, control, smollm_pre)
    assert ids_of(plain, "Hello world") == ids_of(special, "Hello world")

    samples = SAMPLES + [(f"random_mix_{seed}", random_mix(seed, 1200)) for seed in (1, 2)]
    byte_chars = bytes_to_unicode()
    vocab = set(tokens)
    missing = [b for b in range(256) if byte_chars[b] not in vocab]

    def without_missing(text):
        return bytes(b for b in text.encode("utf-8") if b not in missing)

    def decoded_bytes(ids):
        unicode_to_byte = {c: b for b, c in byte_chars.items()}
        out = bytearray()
        for i in ids:
            token = tokens[i]
            out += token.encode("utf-8") if i in dict(control) else bytes(unicode_to_byte[c] for c in token)
        return bytes(out)

    out_samples = []
    for name, text in samples:
        ids = ids_of(plain, text)
        ids_special = ids_of(special, text)
        assert decoded_bytes(ids) == without_missing(text), name
        assert decoded_bytes(ids_special) == without_missing(text), name
        if without_missing(text) == text.encode("utf-8"):
            assert special.decode(ids_special, skip_special_tokens=False) == text, name
        out_samples.append({"name": name, "text": text, "ids": ids, "ids_special": ids_special})

    # transformers' own GGUF route: it converts tokens/merges but builds a plain ByteLevel pre-tokenizer.
    from transformers import AutoTokenizer
    import transformers
    hf = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
    hf_pre = json.loads(hf.backend_tokenizer.to_str())["pre_tokenizer"]
    # Its ids are exactly those of the same tables under GPT-2's pre-tokenizer alone: the missing
    # Digits step is its only difference, and it shows only where whitespace is followed by a number.
    gpt2_only = build_reference(tokens, merges, control, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    differs_on = []
    transformers_ids = {}
    for s in out_samples:
        got = hf.encode(s["text"], add_special_tokens=False)
        if got != ids_of(gpt2_only, s["text"]):
            sys.exit(f"transformers' GGUF tokenizer differs from BPE + ByteLevel on {s['name']}")
        if got != s["ids_special"]:
            differs_on.append(s["name"])
            transformers_ids[s["name"]] = got
            if not any(a.isspace() and b.isnumeric() for a, b in zip(s["text"], s["text"][1:])):
                sys.exit(f"transformers' GGUF tokenizer differs on {s['name']}, where no whitespace meets a number")
    for name in ("hello", "paris", "capital", "contractions", "cjk", "emoji", "chat"):
        assert name not in differs_on, name
    assert "space_before_number" in differs_on

    with open(shakespeare_path, "rb") as f:   # bytes: text mode would turn "\r\n" into "\n"
        shakespeare = f.read().decode("utf-8")
    shakespeare_ids = ids_of(plain, shakespeare)
    packed = struct.pack(f"<{len(shakespeare_ids)}i", *shakespeare_ids)

    def int_field(key):
        v = field(key)
        return None if v is None else int(v)

    result = {
        "source": {
            "gguf": GGUF_NAME,
            "gguf_sha256": sha256_file(gguf_path),
            "pre_tokenizer": SMOLLM_PRE_TOKENIZER,
            "tokenizers": tokenizers.__version__,
            "transformers": transformers.__version__,
            "gguf_py": version("gguf"),
            "python": sys.version.split()[0],
        },
        "gguf": {
            "model": model,
            "pre": pre,
            "vocab_size": len(tokens),
            "merges": len(merges),
            "control_tokens": {text: i for i, text in control},
            "bos_token_id": int_field("tokenizer.ggml.bos_token_id"),
            "eos_token_id": int_field("tokenizer.ggml.eos_token_id"),
            "unknown_token_id": int_field("tokenizer.ggml.unknown_token_id"),
            "padding_token_id": int_field("tokenizer.ggml.padding_token_id"),
            "add_bos_token": bool(field("tokenizer.ggml.add_bos_token", False)),
        },
        "samples": out_samples,
        "bytes_without_token": missing,
        "digits_beyond_regex_numbers": digits_beyond_regex(),
        "transformers_gguf": {"pre_tokenizer": hf_pre, "differs_on": differs_on, "ids": transformers_ids},
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
    print(f"wrote {args.out}: {len(out_samples)} samples ({total} bytes of text), tiny-shakespeare "
          f"{len(shakespeare_ids)} ids; transformers' GGUF tokenizer differs on {len(differs_on)}: {', '.join(differs_on)}")


if __name__ == "__main__":
    main()
