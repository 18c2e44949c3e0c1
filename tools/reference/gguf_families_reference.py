"""Writes Tests/Fixtures/gguf_families/<arch>/ for the GGUF architectures Myopia converts.

    /opt/refenv/bin/python tools/reference/gguf_families_reference.py [--out DIR] [--only llama,qwen2]

For each of llama, qwen2, qwen3 and gemma2 (two layers, C = 32, F = 256, a vocabulary of about 300):

- model.gguf: a random `transformers` model written with the `gguf` package's GGUFWriter as
  llama.cpp's convert_hf_to_gguf.py writes that architecture: its `<arch>.*` metadata, tensor names
  blk.N.attn_q ... (q/k rows permuted for llama only; Gemma's norm weights with 1 added), and the
  tokenizer: byte-level BPE ("gpt2" with tokenizer.ggml.pre llama-bpe / qwen2) for llama, qwen2 and
  qwen3, SentencePiece ("llama" with scores, byte tokens <0x00>..<0xFF>, no merges) for gemma2.
  Tensors are stored in a mix of types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (quantised by
  gguf.quants.quantize) and, for ffn_down (rows of 256), raw random K-quant blocks (Q2_K ... Q6_K)
  whose f16 scales are finite and sized so the weights are about 0.05 (the package cannot quantise
  to most K types).
- reference.safetensors: "logits" [T, V] of `AutoModelForCausalLM.from_pretrained(dir,
  gguf_file="model.gguf")` in float32 (eager attention) on "tokens" [T] (int64), and "logits64" of
  the same model in float64.
- expected.json: the tokens, the mean cross-entropy of tokens[1:] given tokens[:-1], the config
  values transformers' GGUF loader does not read from the file and that are passed to
  from_pretrained (recorded under "transformers_overrides": qwen3's head_dim, gemma2's soft-caps
  and query_pre_attn_scalar), and the ids of `AutoTokenizer.from_pretrained(dir,
  gguf_file="model.gguf")` for texts with and without special tokens.

Checks (exit 1 on failure): the model transformers loads from the GGUF has the original model's
weights up to the quantisation (each tensor's dequantised values equal gguf.quants.dequantize of
what was written; q/k permutation undone); the float32 and float64 logits agree; the K-quant
tensors dequantise to finite values. Deterministic.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders, normalizers
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers import LlamaConfig, Qwen2Config, Qwen3Config, Gemma2Config

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "gguf_families")

CORPUS = """The quick brown fox jumps over the lazy dog. A tiny model reads the same words again and again:
the cat sat on the mat, the dog sat on the log, and 12345 numbers went by in 2024 and 1999.
Myopia converts GGUF files; llama.cpp writes them. Qwen, Gemma and Llama are model families.
Hello, world! It's a test -- isn't it? We'll see: they're here, you've been told, I'm sure.
""" * 3

TEXTS = [
    "Hello, world!",
    "the cat sat on the mat",
    " leading space and  two spaces",
    "numbers 12345 and 2024-12-07",
    "It's a test, isn't it? We'll see.",
    "Unicode: café, naïve, 日本語, emoji 🙂",
    "tabs\tand\nnew lines\n\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<think>reasoning</think> done",
    "<start_of_turn>model\nok<end_of_turn>",
    "",
    "   ",
]

# Per architecture: the HF config, the GGUF tokenizer kind, and tensor types (by GGUF name suffix).
ARCHS = {
    "llama": dict(pre="llama-bpe", ffn_down=[Q.Q4_K, Q.Q6_K], tied=False,
                  types={"attn_q": Q.F16, "attn_k": Q.Q8_0, "attn_v": Q.F32, "attn_output": Q.BF16,
                         "ffn_gate": Q.Q4_0, "ffn_up": Q.Q5_1, "token_embd": Q.Q8_0, "output": Q.Q4_1}),
    "qwen2": dict(pre="qwen2", ffn_down=[Q.Q6_K, Q.Q5_K], tied=True,
                  types={"attn_q": Q.Q8_0, "attn_k": Q.F16, "attn_v": Q.Q5_0, "attn_output": Q.F16,
                         "ffn_gate": Q.Q4_1, "ffn_up": Q.Q8_0, "token_embd": Q.Q8_0}),
    "qwen3": dict(pre="qwen2", ffn_down=[Q.Q5_K, Q.Q3_K], tied=False,
                  types={"attn_q": Q.F16, "attn_k": Q.Q8_0, "attn_v": Q.F16, "attn_output": Q.Q5_0,
                         "ffn_gate": Q.Q8_0, "ffn_up": Q.Q4_0, "token_embd": Q.F16, "output": Q.Q8_0}),
    "gemma2": dict(pre=None, ffn_down=[Q.Q3_K, Q.Q2_K], tied=True,
                   types={"attn_q": Q.Q8_0, "attn_k": Q.F16, "attn_v": Q.Q8_0, "attn_output": Q.F16,
                          "ffn_gate": Q.Q5_1, "ffn_up": Q.Q5_0, "token_embd": Q.Q8_0}),
}

C, F, L, NH, NKV, T = 32, 256, 2, 4, 2, 12
ROPE_THETA = 5000.0

# Byte offsets of the f16 fields of one K-quant block (ggml-common.h).
K_F16_FIELDS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


# MARK: - Tokenizers

def byte_level_vocab():
    """A byte-level BPE trained on CORPUS, then control and user-defined tokens (llama.cpp's types)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    m = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(m["vocab"].items(), key=lambda kv: kv[1])]
    merges = [" ".join(p) if isinstance(p, list) else p for p in m["merges"]]
    types = [1] * len(tokens)
    for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        tokens.append(t); types.append(3)
    for t in ["<think>", "</think>"]:
        tokens.append(t); types.append(4)
    return dict(tokens=tokens, merges=merges, types=types, bos=len(tokens) - 4, eos=len(tokens) - 3)


def sentencepiece_vocab():
    """A SentencePiece-style vocabulary as Gemma's GGUF holds it: <pad> <eos> <bos> <unk>, control
    turn markers, the 256 byte tokens <0xNN>, then pieces (▁ for a space) from a BPE trained on
    CORPUS, one token of two real spaces (as Gemma's files spell runs of spaces), scores falling
    with the position. No merges: transformers rebuilds them from the order, llama.cpp from scores."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=200, show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    m = json.loads(tok.to_str())["model"]
    pieces = [t for t, _ in sorted(m["vocab"].items(), key=lambda kv: kv[1])]
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    types = [3, 3, 3, 2, 3, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    # Pieces longest-merge-last, as a trained SentencePiece lists them: single characters first.
    ordered = [p for p in pieces if len(p) == 1] + [p for p in pieces if len(p) > 1]
    for p in ordered + ["  "]:
        tokens.append(p); types.append(1)
    tokens.append("<mask>"); types.append(4)
    scores = [0.0] * 6 + [0.0] * 256 + [-float(i) for i in range(len(ordered) + 1)] + [0.0]
    return dict(tokens=tokens, scores=scores, types=types, bos=2, eos=1, unk=3, pad=0)


# MARK: - Models

def hf_config(arch, vocab):
    common = dict(vocab_size=vocab, hidden_size=C, intermediate_size=F, num_hidden_layers=L,
                  num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
                  attn_implementation="eager")
    if arch == "llama":
        return LlamaConfig(**common, tie_word_embeddings=False, head_dim=C // NH)
    if arch == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=True)
    if arch == "qwen3":
        return Qwen3Config(**common, head_dim=16, tie_word_embeddings=False)
    return Gemma2Config(**common, head_dim=16, tie_word_embeddings=True, sliding_window=4,
                        attn_logit_softcapping=2.0, final_logit_softcapping=3.0, query_pre_attn_scalar=16,
                        layer_types=["sliding_attention", "full_attention"])


def permute(w, n_head, n_head_kv):
    """llama.cpp's LlamaModel.permute: rows of each head reordered for interleaved RoPE."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def kquant_blocks(rng, qtype, rows, cols):
    """Random K-quant blocks whose f16 scales are finite, sized so the values are about 0.05."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // block
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    fields = K_F16_FIELDS[qtype]

    def set_scale(scale):
        for offset in fields:
            v = (rng.uniform(0.5, 1.0, size=n) * scale).astype(np.float16)
            blocks[:, offset:offset + 2] = v.view(np.uint8).reshape(n, 2)

    set_scale(1e-3)
    std = gguf.quants.dequantize(blocks.reshape(rows, -1), qtype).std()
    set_scale(1e-3 * 0.05 / std)
    raw = blocks.reshape(rows, cols // block * size)
    deq = gguf.quants.dequantize(raw, qtype)
    assert np.isfinite(deq).all() and 0.01 < deq.std() < 0.2, (qtype, deq.std())
    return raw


def gguf_name(hf):
    """The GGUF name of a Hugging Face parameter (llama.cpp's tensor map for these families)."""
    table = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in table:
        return table[hf]
    parts = hf.split(".")
    layer, rest = parts[2], ".".join(parts[3:])
    sub = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
           "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    gemma = {"post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
             "post_feedforward_layernorm": "post_ffw_norm"}
    base, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{(gemma.get(base) if GEMMA and base in gemma else sub[base])}.{kind}"


GEMMA = False


def write_gguf(path, arch, spec, model, config, vocab_info, rng):
    global GEMMA
    GEMMA = arch == "gemma2"
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"myopia-tiny-{arch}")
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    if arch == "llama":
        w.add_rope_dimension_count(config.head_dim)
        w.add_vocab_size(config.vocab_size)
    if arch in ("qwen3", "gemma2"):
        w.add_key_length(config.head_dim)
        w.add_value_length(config.head_dim)
    if arch == "gemma2":
        w.add_sliding_window(config.sliding_window)
        w.add_attn_logit_softcapping(config.attn_logit_softcapping)
        w.add_final_logit_softcapping(config.final_logit_softcapping)
    # Tokenizer.
    if "merges" in vocab_info:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(spec["pre"])
        w.add_token_list(vocab_info["tokens"])
        w.add_token_types(vocab_info["types"])
        w.add_token_merges(vocab_info["merges"])
    else:
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(vocab_info["tokens"])
        w.add_token_scores(vocab_info["scores"])
        w.add_token_types(vocab_info["types"])
        w.add_unk_token_id(vocab_info["unk"])
        w.add_pad_token_id(vocab_info["pad"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
    w.add_bos_token_id(vocab_info["bos"])
    w.add_eos_token_id(vocab_info["eos"])

    expected = {}   # GGUF name -> float32 values the file holds (dequantised), torch order
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = gguf_name(hf)
        data = t.detach().float().numpy().copy()
        if arch == "llama" and name.endswith("attn_q.weight"):
            data = permute(data, NH, NH)
        if arch == "llama" and name.endswith("attn_k.weight"):
            data = permute(data, NH, NKV)
        if arch == "gemma2" and name.endswith("norm.weight"):
            data = data + 1
        kind = name.split(".")[-2]
        if kind == "ffn_down":
            qtype = spec["ffn_down"][int(name.split(".")[1])]
            raw = kquant_blocks(rng, qtype, *data.shape)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
            expected[name] = gguf.quants.dequantize(raw, qtype).reshape(data.shape)
            continue
        qtype = spec["types"].get(kind, Q.F32) if data.ndim == 2 else Q.F32
        raw = gguf.quants.quantize(data, qtype)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        expected[name] = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(data.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def overrides(arch, config):
    """Config values llama.cpp writes but transformers' GGUF loader does not read (its defaults differ)."""
    if arch == "qwen3":
        return {"head_dim": config.head_dim}
    if arch == "gemma2":
        return {"attn_logit_softcapping": config.attn_logit_softcapping,
                "final_logit_softcapping": config.final_logit_softcapping,
                "query_pre_attn_scalar": config.query_pre_attn_scalar,
                "layer_types": config.layer_types}
    return {}


def build(arch, out_dir, failures):
    spec = ARCHS[arch]
    seed = {"llama": 11, "qwen2": 12, "qwen3": 13, "gemma2": 14}[arch]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vocab_info = sentencepiece_vocab() if arch == "gemma2" else byte_level_vocab()
    config = hf_config(arch, len(vocab_info["tokens"]))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():   # norm weights away from their initial 1 (0 for Gemma) so a missed offset shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.2)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.gguf")
    expected = write_gguf(path, arch, spec, model, config, vocab_info, rng)

    over = overrides(arch, config)
    loaded = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file="model.gguf", dtype=torch.float32,
                                                  attn_implementation="eager", **over).eval()
    # The weights transformers loaded are the file's, with llama.cpp's fix-ups undone.
    sd = loaded.state_dict()
    for hf in model.state_dict():
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue
        got = sd[hf]
        if arch == "llama" and (hf.endswith("q_proj.weight") or hf.endswith("k_proj.weight")):
            n_kv = NH if hf.endswith("q_proj.weight") else NKV
            ok = np.array_equal(permute(got.numpy(), NH, n_kv), expected[gguf_name(hf)])
        elif arch == "gemma2" and "norm" in hf:
            ok = np.array_equal(got.numpy(), expected[gguf_name(hf)] - 1)
        else:
            ok = np.array_equal(got.numpy(), expected[gguf_name(hf)])
        if not ok:
            failures.append(f"{arch}: {hf} as loaded differs from the file's values")
    if loaded.config.model_type != arch:
        failures.append(f"{arch}: loaded model_type {loaded.config.model_type}")

    tokenizer = AutoTokenizer.from_pretrained(out_dir, gguf_file="model.gguf")
    ids = tokenizer(CORPUS.split("\n")[0], add_special_tokens=False).input_ids[:T]
    if len(ids) < T:
        failures.append(f"{arch}: too few tokens")
    tokens = torch.tensor([ids])
    with torch.no_grad():
        logits = loaded(tokens).logits[0].float()
        loaded64 = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file="model.gguf", dtype=torch.float64,
                                                        attn_implementation="eager", **over).eval()
        logits64 = loaded64(tokens).logits[0]
    rel = ((logits.double() - logits64).norm() / logits64.norm()).item()
    if rel > 1e-5:
        failures.append(f"{arch}: float32 and float64 logits differ by {rel}")
    loss = torch.nn.functional.cross_entropy(logits64[:-1], tokens[0, 1:]).item()
    save_file({"tokens": tokens[0].clone(), "logits": logits.contiguous()},
              os.path.join(out_dir, "reference.safetensors"))

    texts = []
    for text in TEXTS:
        texts.append({"text": text,
                      "ids": tokenizer(text, add_special_tokens=False).input_ids,
                      "ids_with_special": tokenizer(text, add_special_tokens=True).input_ids})
    doc = {
        "generator": "tools/reference/gguf_families_reference.py",
        "architecture": arch,
        "vocab_size": config.vocab_size,
        "tokens": ids,
        "loss": loss,
        "transformers_overrides": over,
        "tensor_types": {n: t.tensor_type.name for n, t in ((t.name, t) for t in gguf.GGUFReader(path).tensors)},
        "tokenizer_class": type(tokenizer).__name__,
        "texts": texts,
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{arch}: {os.path.getsize(path)} bytes, loss {loss:.6f}, tokenizer {type(tokenizer).__name__}")


def sentencepiece_llama_vocab(rng):
    """Llama 2's layout: <unk> <s> </s>, the byte tokens, then pieces whose scores are not in
    position order (pieces of 3+ characters shuffled among themselves), so the merges rebuilt from
    scores differ from those rebuilt from positions."""
    base = sentencepiece_vocab()
    pieces = base["tokens"][262:-2]
    long = [i for i, p in enumerate(pieces) if len(p) >= 3]
    order = list(range(len(pieces)))
    shuffled = rng.permutation(long)
    for i, j in zip(long, shuffled):
        order[i] = int(j)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces + ["<|user|>"]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [4]
    scores = [0.0] * 259 + [-float(order[i]) for i in range(len(pieces))] + [0.0]
    return dict(tokens=tokens, scores=scores, types=types, unk=0, bos=1, eos=2)


def build_tokenizer_only(out_dir):
    """llama_sentencepiece/model.gguf: a `llama` GGUF with no tensors, only a SentencePiece tokenizer
    (tokenizer.ggml.model "llama", scores, no merges), and transformers' ids for the texts."""
    v = sentencepiece_llama_vocab(np.random.default_rng(15))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(v["tokens"])
    w.add_token_scores(v["scores"])
    w.add_token_types(v["types"])
    w.add_unk_token_id(v["unk"])
    w.add_bos_token_id(v["bos"])
    w.add_eos_token_id(v["eos"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tokenizer = AutoTokenizer.from_pretrained(out_dir, gguf_file="model.gguf")
    texts = [{"text": t, "ids": tokenizer(t, add_special_tokens=False).input_ids,
              "ids_with_special": tokenizer(t, add_special_tokens=True).input_ids} for t in TEXTS]
    doc = {"generator": "tools/reference/gguf_families_reference.py", "architecture": "llama",
           "tokenizer_class": type(tokenizer).__name__, "texts": texts}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"llama_sentencepiece: {os.path.getsize(path)} bytes, tokenizer {type(tokenizer).__name__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", default=",".join(ARCHS))
    args = ap.parse_args()
    failures = []
    for arch in args.only.split(","):
        build(arch, os.path.join(args.out, arch), failures)
    build_tokenizer_only(os.path.join(args.out, "llama_sentencepiece"))
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
