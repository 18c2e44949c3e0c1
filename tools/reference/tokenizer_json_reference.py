#!/usr/bin/env python3
"""Reference fixtures for Myopia's tokenizer.json reader (docs/DESIGN.md §6, Sources/MyopiaTokenizers/TokenizerJSON.swift).

No model hub is reachable, so the tokenizers are made here: for each family, a small BPE vocabulary
(a few hundred tokens) is trained with the `tokenizers` library on the text embedded below, and the
tokenizer.json gets the normalizer, pre-tokenizer, model options, added tokens, post-processor and
decoder blocks that family's real tokenizer.json ships, written out in FAMILIES below:

  gpt_neox            GPT-NeoX / Pythia: NFC, ByteLevel (regex), ByteLevel post-processor and decoder,
                      <|endoftext|> and <|padding|> at ids 0 and 1, runs of spaces as added tokens
                      (normalized, not special), merges written as "a b" strings
  qwen2               Qwen2 / 2.5 / 3: NFC, Split(Qwen2's regex, Isolated) + ByteLevel(no regex),
                      continuing_subword_prefix "", <|endoftext|>, <|im_start|>, <|im_end|>, <think>
  llama3              Llama 3: Split(Llama 3's regex) + ByteLevel, ignore_merges, <|begin_of_text|> put
                      first by TemplateProcessing (in a Sequence with ByteLevel); two whole-word tokens
                      that no merge makes, so that ignore_merges shows
  gemma               Gemma: Replace(" " -> "▁"), Split(" ", MergedWithPrevious), BPE with byte_fallback
                      and <0x00>..<0xFF>, unk <unk> (fused), <bos> put first, decoder
                      Replace/ByteFallback/Fuse
  llama2              Llama 2 (legacy): Prepend("▁") + Replace, byte fallback, <s> put first, decoder
                      Replace/ByteFallback/Fuse/Strip, merges as "a b" strings
  mistral             Mistral: no normalizer, Metaspace(prepend_scheme first, split false), byte
                      fallback, [INST] / [/INST]
  features_bytelevel  the options the families above do not use: NFKC + Lowercase + Strip,
                      Split(String "-", Removed) + Digits + ByteLevel(add_prefix_space), added tokens
                      with lstrip / rstrip / single_word / normalized, BOS and EOS around the text
  features_chars      Metaspace(always, split) pre-tokenizer and decoder, an unknown token fused over
                      runs (no byte fallback; trained on the ASCII lines only, so that other text has
                      characters without a token), ignore_merges on a character vocabulary

Writes Tests/Fixtures/tokenizer_json/<name>/tokenizer.json and expected.json:

  samples       [{name, text, ids, ids_with_special, decoded, decoded_skip_special}]:
                  ids                   encode(text, add_special_tokens=False)
                  ids_with_special      encode(text, add_special_tokens=True)
                  decoded               decode(ids, skip_special_tokens=False)
                  decoded_skip_special  decode(ids_with_special, skip_special_tokens=True)
                The texts: Unicode (CJK, emoji, combining characters that NFC composes), digits and
                long numbers, whitespace runs, tabs and newlines, contractions, the family's special
                tokens inside text, characters the vocabulary lacks (byte fallback, unknown), long
                pieces, and seeded mixes of all of these.
  decode_cases  [{name, ids, text, text_skip_special}]: id lists that are not whole texts (a cut
                UTF-8 character, byte-fallback bytes that are not UTF-8, ids without a token).
  vocab_size, added_tokens, post_processor {prefix, suffix}: what the Swift side should report.
  source        the library versions.

Each tokenizer is also loaded by transformers (PreTrainedTokenizerFast(tokenizer_file=...)), whose ids
must be the same; the script exits 1 if a check fails. Deterministic: two runs write identical files.

Usage (from the repo root):
  /opt/refenv/bin/python tools/reference/tokenizer_json_reference.py [--out DIR]
"""

import argparse
import json
import os
import random
import sys
from importlib.metadata import version

import tokenizers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import Checker  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "tokenizer_json")

# ---------------------------------------------------------------------------------------------
# The training text: varied enough that merges cover words, numbers, code and some non-Latin text.

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog, being lazy, does not jump back.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "She said: \"I'm sure they've gone home; we'll see them tomorrow, won't we?\" He didn't answer.",
    "In 1969, 600 million people watched the landing. By 2024 the number of satellites passed 10,000.",
    "Prices rose 3.5% in March and 12.25% over the year; the index stood at 1,234,567.89 on 2024-03-31.",
    "def tokenize(text):\n    pieces = []\n    for word in text.split():\n        pieces.append(word.lower())\n    return pieces\n",
    "for (int i = 0; i < n; i++) {\n\tsum += values[i] * weights[i];\n}\n",
    "Training a language model means predicting the next token, then the next, and the next again.",
    "The model reads the text, the text becomes tokens, and the tokens become numbers in a table.",
    "Attention lets each position look back at every earlier position and take what it needs.",
    "Un café au lait, s'il vous plaît. Où est la bibliothèque? L'été dernier, nous étions à Paris.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Mädchen, schön.",
    "Москва — столица России. Привет, как дела? Всё хорошо, спасибо.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "東京は日本の首都です。今日はいい天気ですね。",
    "北京是中国的首都。我们今天学习语言模型。",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 10000 42 256 1024 65536 3.14159 2.71828",
    "We measured the loss at every step; the loss went down, then flattened, then went down again.",
    "Once upon a time there was a small model that wanted to see further ahead than the next word.",
    "Tabs\tand  double  spaces   and newlines\n\nappear in real text, as do CRLF line ends\r\n.",
    "email: someone@example.com, url: https://example.com/path?query=value&x=1 #tag @user",
    "Hello world! Hello again, world. Goodbye, world... HELLO WORLD?!",
    "I'm, you're, he's, she'd, we'll, they've, it's, don't, can't, won't, shouldn't, I'd've.",
]

# ---------------------------------------------------------------------------------------------
# The blocks each family ships, as its tokenizer.json writes them.

QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def byte_level(add_prefix_space, trim_offsets, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": use_regex}


def template(before, after=()):
    """TemplateProcessing: `before` tokens, $A, `after` tokens; each (content, id)."""
    def piece(name):
        return {"SpecialToken": {"id": name, "type_id": 0}}
    single = [piece(n) for n, _ in before] + [{"Sequence": {"id": "A", "type_id": 0}}] + [piece(n) for n, _ in after]
    pair = (single[:-len(after)] if after else single) + [piece(n) for n, _ in before] + \
        [{"Sequence": {"id": "B", "type_id": 1}}] + [piece(n) for n, _ in after]
    return {
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": {n: {"id": n, "ids": [i], "tokens": [n]} for n, i in sorted(set(before) | set(after))},
    }


def added(content, token_id, special=True, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {"id": token_id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def sp_decoder(strip):
    steps = [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]
    if strip:
        steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"type": "Sequence", "decoders": steps}


FAMILIES = {
    "gpt_neox": {
        "style": "byte", "vocab_size": 700, "front_specials": ["<|endoftext|>", "<|padding|>"], "merges_as_strings": True,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": byte_level(False, True, True),
        "post_processor": byte_level(False, True, True),
        "decoder": byte_level(False, True, True),
        "model": {"continuing_subword_prefix": None, "end_of_word_suffix": None, "ignore_merges": False},
        # After the vocabulary: runs of spaces, longest first (Pythia has 24 down to 2).
        "appended_tokens": [(" " * n, {"special": False, "normalized": True}) for n in (6, 5, 4, 3, 2)],
        "specials_in_text": ["<|endoftext|>", "<|padding|>"],
    },
    "qwen2": {
        "style": "byte", "vocab_size": 700, "front_specials": [],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(False, False, False)]},
        "post_processor": byte_level(False, False, False),
        "decoder": byte_level(False, False, False),
        "model": {"continuing_subword_prefix": "", "end_of_word_suffix": "", "ignore_merges": False},
        "appended_tokens": [("<|endoftext|>", {}), ("<|im_start|>", {}), ("<|im_end|>", {}),
                            ("<think>", {"special": False, "normalized": False}), ("</think>", {"special": False, "normalized": False})],
        "specials_in_text": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
    },
    "llama3": {
        "style": "byte", "vocab_size": 700, "front_specials": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(False, True, False)]},
        "post_processor": "llama3",   # filled in once <|begin_of_text|>'s id is known
        "decoder": byte_level(True, True, True),
        "model": {"continuing_subword_prefix": None, "end_of_word_suffix": None, "ignore_merges": True},
        "whole_word_tokens": ["Ġsupercalifragilistic", "Ġantidisestablishment"],
        "appended_tokens": [("<|begin_of_text|>", {}), ("<|end_of_text|>", {}), ("<|reserved_special_token_0|>", {}),
                            ("<|start_header_id|>", {}), ("<|end_header_id|>", {}), ("<|eot_id|>", {})],
        "specials_in_text": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    },
    "gemma": {
        "style": "sentencepiece", "vocab_size": 800,
        "front_specials": ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": ("bos", "<bos>"),
        "decoder": sp_decoder(strip=False),
        "model": {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "ignore_merges": False},
        "specials_in_text": ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<unk>"],
    },
    "llama2": {
        "style": "sentencepiece", "vocab_size": 800, "front_specials": ["<unk>", "<s>", "</s>"], "merges_as_strings": True,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": ("bos", "<s>"),
        "decoder": sp_decoder(strip=True),
        "model": {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "ignore_merges": False},
        "specials_in_text": ["<s>", "</s>", "<unk>"],
    },
    "mistral": {
        "style": "sentencepiece", "vocab_size": 800, "front_specials": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": ("bos", "<s>"),
        "decoder": sp_decoder(strip=True),
        "model": {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "ignore_merges": False},
        "specials_in_text": ["<s>", "</s>", "[INST]", "[/INST]"],
    },
    "features_bytelevel": {
        "style": "byte", "vocab_size": 500, "front_specials": ["<s>", "</s>"],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": False, "strip_right": True}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": "-"}, "behavior": "Removed", "invert": False},
            {"type": "Digits", "individual_digits": False},
            byte_level(True, True, True)]},
        "post_processor": ("bos_eos", "<s>", "</s>"),
        "decoder": byte_level(True, True, True),
        "model": {"continuing_subword_prefix": None, "end_of_word_suffix": None, "ignore_merges": False},
        "appended_tokens": [("<mask>", {"lstrip": True}), ("<sep>", {"rstrip": True}),
                            ("[word]", {"special": False, "single_word": True, "normalized": False}),
                            ("Hello World", {"special": False, "normalized": True})],
        "specials_in_text": ["<s>", "</s>", "<mask>", "<sep>", "[word]", "Hello World"],
    },
    "features_chars": {
        "style": "chars", "vocab_size": 400, "ascii_only": True, "front_specials": ["<unk>"], "merges_as_strings": True,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": False, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "ignore_merges": True},
        "appended_tokens": [("<|user|>", {"rstrip": True})],
        "specials_in_text": ["<unk>", "<|user|>"],
    },
}

# ---------------------------------------------------------------------------------------------
# Test texts. "{S0}", "{S1}", ... stand for the family's specials_in_text.

SAMPLES = [
    ("hello", "Hello world"),
    ("empty", ""),
    ("single_space", " "),
    ("capital", "The capital of France is Paris."),
    ("contractions", "I'm sure he's said they've we'll you'd it's don't. I'M HE'S THEY'VE WE'LL YOU'D 'S 'T 'Re 'vE 'lL "
                     "rock'n'roll O'Neill's it’s x'ſx ''s '''tis"),
    ("digits", "1 12 123 1234 12345 123456 1234567890 3.14 -42 +7 1,000,000 2024-03-31 10:45 007 v1.2.3"),
    ("long_number", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280"),
    ("numbers_other_scripts", "٣٤٥ ١٢ १२३ ৩৪ ๑๒๓ ① ½ ¾ Ⅻ ²³ ₁₂ ５６７ 𝟙𝟚𝟛"),
    ("spaces", "a b  c   d    e     f      g       h"),
    ("leading_trailing_spaces", "   leading and trailing   "),
    ("only_spaces", "        "),
    ("tabs_newlines", "tabs\tand\t\tmixed \t \n\t whitespace\nline two\n\n\nline five\n"),
    ("crlf", "Windows\r\nline\r\n\r\nends\r\n"),
    ("space_before_newline", "word \nword  \n\n  word\n \n"),
    ("unicode_whitespace", "nbsp\u00a0here em\u2003space ideo\u3000space \u00a0\u00a0x"),
    ("code", "def f(x):\n    return x**2 + 3.5 * x - 10  # square\n\tif (a&&b) { c->d[0] = 42; }\n"),
    ("punctuation", "Wait... what?!?! --- (yes) [no] {maybe} \"quoted\" «guillemets» — dashes ‘curly’ “double” !!!"),
    ("cjk", "漢字とひらがなとカタカナ。中文测试，你好世界！한국어 텍스트입니다."),
    ("emoji", "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇫🇷 😀😃 hi👋there 🧬"),
    ("combining", "e\u0301 café cafe\u0301 n\u0303 a\u0308\u0304 \u212b \u1100\u1161\u11a8 \u0301leading x\u20dd"),
    ("compatibility", "ＡＢＣ１２３ ﬁ ﬂ ㎏ ½ ² Ⅻ ℌ ﹏ ｶﾀｶﾅ"),
    ("mixed_case", "HeLLo WoRLD İstanbul ΣΊΣΥΦΟΣ Straße ǅ"),
    # Characters newer than tokenizers' normalization tables (Unicode 11.0), which it leaves alone:
    # U+32FF (12.1, NFKC "令和" today), U+A7F2 (14.0), U+11935 U+11930 (13.0, NFC U+11938 today).
    ("unicode_versions", "\u32ff \ua7f2\ua7f3 \U00011935\U00011930 \U00011938 e\u0301\U00011930 ﬁ\u32ff\u0301"),
    ("cyrillic_greek_arabic", "Привет, мир! Καλημέρα κόσμε. مرحبا بالعالم ٢٠٢٤"),
    ("controls", "nul\x00bel\x07del\x7f esc\x1b[0m end"),
    ("rare_characters", "\U0001f9ec\U0001fae0 \u2603 \u0fd5 \U00010348 \U000e0041 \ufffd"),
    ("special_tokens", "{S0}Hello{S1} world {S0} again{S0}{S0} x{S1}y"),
    ("special_tokens_spaced", "text  {S0}   spaced {S1}\n{S0}\tend "),
    ("partial_special", "<| <|endoftext| endoftext|> <s <bos <|im_end| [INST [word "),
    ("hyphens", "well-known state-of-the-art -leading trailing- --double-- a-1-2"),
    ("words_for_options", "Hello World hello world HELLO WORLD [word] a[word]b [word]s x [word]"),
    ("long_word", "abcdefghij" * 30),
    ("long_spaces", " " * 150 + "word" + " " * 3 + "\n" * 20 + "x"),
    ("long_repeat", "the " * 80),
    ("whole_words", "supercalifragilistic antidisestablishment supercalifragilistics xsupercalifragilistic supercalifragilistic."),
]

FRAGMENTS = [
    "the", "The", "THE", " ", "  ", "   ", "\n", "\n\n", "\t", " \t", "\r\n", "'s", "'S", "'ll", "'", "0", "1", "42", "3.5",
    "2024", " 7", "  9", ".", ",", "!", "?", "...", "-", "—", "(", ")", "\"", "é", "e\u0301", "ü", "漢", "字", "한", "ж",
    "ا", "न", "👍", "\u200d", "🏽", "❤", "\ufe0f", "\u00a0", "\u3000", "½", "٣", "²", "ﬁ", "Ａ", "€", "_", "@", "x", "y",
    "A", "Q", "▁", "<0x41>", "{S0}", "{S1}", "{S2}",
]


def random_mix(seed, pieces):
    rng = random.Random(seed)
    return "".join(rng.choice(FRAGMENTS) for _ in range(pieces))


def texts_for(family):
    specials = family["specials_in_text"]

    def fill(text):
        for i in range(3):
            text = text.replace("{S%d}" % i, specials[i % len(specials)])
        return text
    out = [(name, fill(text)) for name, text in SAMPLES]
    out += [("mix_%d" % seed, fill(random_mix(seed, 60))) for seed in range(6)]
    return out


# ---------------------------------------------------------------------------------------------
# Building the tokenizers.

def train(family):
    """A BPE vocabulary and merges trained on CORPUS under the family's normalizer and pre-tokenizer."""
    style = family["style"]
    tok = Tokenizer(models.BPE())
    if style == "byte":
        shelled = Tokenizer.from_str(json.dumps(shell(family)))
        if shelled.normalizer is not None:
            tok.normalizer = shelled.normalizer
        tok.pre_tokenizer = shelled.pre_tokenizer
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        # Pieces as SentencePiece makes them: "▁" for spaces, a cut before each "▁".
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=family["vocab_size"], min_frequency=2, initial_alphabet=alphabet,
                                  special_tokens=family["front_specials"] if style == "byte" else [], show_progress=False)
    # (limit_alphabet would break ties between equally rare characters differently from run to run.)
    tok.train_from_iterator([line for line in CORPUS if line.isascii()] if family.get("ascii_only") else CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], model["merges"]


def shell(family):
    """A tokenizer.json with no vocabulary, to build the family's normalizer and pre-tokenizer from."""
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": family["normalizer"], "pre_tokenizer": family["pre_tokenizer"], "post_processor": None,
            "decoder": None, "model": {"type": "BPE", "vocab": {}, "merges": []}}


def build(name, family):
    """The family's tokenizer.json as a dict, in the order tokenizers writes the keys."""
    trained_vocab, merges = train(family)
    style = family["style"]
    vocab = {}
    if style == "byte":
        vocab = dict(trained_vocab)   # the trainer put front_specials first
    else:
        for token in family["front_specials"]:
            vocab[token] = len(vocab)
        if style == "sentencepiece":
            for b in range(256):
                vocab["<0x%02X>" % b] = len(vocab)
        for token in sorted(trained_vocab, key=trained_vocab.get):
            if token not in vocab:
                vocab[token] = len(vocab)
    for token in family.get("whole_word_tokens", []):
        vocab[token] = len(vocab)

    added_tokens = [added(t, vocab[t]) for t in family["front_specials"]]
    for content, options in family.get("appended_tokens", []):
        added_tokens.append(added(content, len(vocab) + len(added_tokens) - len(family["front_specials"]), **options))
    ids = {t["content"]: t["id"] for t in added_tokens}

    post = family["post_processor"]
    if post == "llama3":
        post = {"type": "Sequence", "processors": [
            byte_level(True, False, True), template([("<|begin_of_text|>", ids["<|begin_of_text|>"])])]}
    elif isinstance(post, tuple) and post[0] == "bos":
        post = template([(post[1], ids[post[1]])])
    elif isinstance(post, tuple) and post[0] == "bos_eos":
        post = template([(post[1], ids[post[1]])], [(post[2], ids[post[2]])])

    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}
    model.update(family["model"])
    model["vocab"] = vocab
    model["merges"] = [" ".join(m) for m in merges] if family.get("merges_as_strings") else merges
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
            "normalizer": family["normalizer"], "pre_tokenizer": family["pre_tokenizer"], "post_processor": post,
            "decoder": family["decoder"], "model": model}


def decode_cases(tok, style):
    """Id lists that are not whole texts."""
    cases = []
    if style == "byte":
        e9 = tok.token_to_id("Ã")   # 0xC3: the first byte of a two-byte character alone
        if e9 is not None:
            cases.append(("cut_character", [e9]))
            cases.append(("cut_character_then_text", [e9] + tok.encode("abc", add_special_tokens=False).ids))
    if style == "sentencepiece":
        b = lambda x: tok.token_to_id("<0x%02X>" % x)
        cases.append(("fallback_valid", [b(0xE2), b(0x98), b(0x83)]))           # ☃
        cases.append(("fallback_invalid", [b(0xE2), b(0x98)] + tok.encode("ab", add_special_tokens=False).ids))
        cases.append(("fallback_lone", [b(0xFF)]))
    cases.append(("beyond_vocabulary", [tok.get_vocab_size() + 5] + tok.encode("ok", add_special_tokens=False).ids))
    cases.append(("empty", []))
    return cases


def compact_json(obj):
    """Sorted keys, one line per sample or decode case: small, stable and diffable."""
    def line(value):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    parts = []
    for key in sorted(obj):
        value = obj[key]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            body = "[\n" + ",\n".join("  " + line(v) for v in value) + "\n ]"
        else:
            body = line(value)
        parts.append(" " + line(key) + ": " + body)
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    check = Checker()
    from transformers import PreTrainedTokenizerFast

    for name, family in FAMILIES.items():
        spec = build(name, family)
        text = json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n"
        tok = Tokenizer.from_str(text)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(text)
        fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))

        # The ids tokenizers gives each added token must be those written (the Swift side checks it too).
        for t in spec["added_tokens"]:
            check(tok.token_to_id(t["content"]) == t["id"], f"{name}: {t['content']!r} has id {t['id']}")

        samples = []
        for sample_name, sample_text in texts_for(family):
            ids = tok.encode(sample_text, add_special_tokens=False).ids
            with_special = tok.encode(sample_text, add_special_tokens=True).ids
            check(fast(sample_text, add_special_tokens=True)["input_ids"] == with_special,
                  f"{name}/{sample_name}: transformers agrees")
            samples.append({
                "name": sample_name, "text": sample_text, "ids": ids, "ids_with_special": with_special,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
            })
        cases = [{"name": n, "ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                  "text_skip_special": tok.decode(ids, skip_special_tokens=True)} for n, ids in decode_cases(tok, family["style"])]
        post = tok.post_processor
        bos = tok.encode("", add_special_tokens=True).ids
        expected = {
            "family": name,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "added_tokens": {t["content"]: t["id"] for t in spec["added_tokens"]},
            "special_tokens": sorted(t["content"] for t in spec["added_tokens"] if t["special"]),
            "post_processor": {"empty_text_ids": bos, "type": None if post is None else type(post).__name__},
            "samples": samples,
            "decode_cases": cases,
            "source": {"tokenizers": tokenizers.__version__, "transformers": version("transformers"),
                       "python": sys.version.split()[0]},
        }
        with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as f:
            f.write(compact_json(expected))
        sizes = [os.path.getsize(os.path.join(folder, f)) for f in ("tokenizer.json", "expected.json")]
        print(f"{name}: vocab {expected['vocab_size']}, {len(spec['model']['merges'])} merges, "
              f"{len(samples)} samples; tokenizer.json {sizes[0] // 1024} KB, expected.json {sizes[1] // 1024} KB")

    if check.failures:
        print(f"{len(check.failures)} checks failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
