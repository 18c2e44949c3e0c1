"""Writes a random GGUF of a given shape, for measuring memory on a model of real size.

    /opt/refenv/bin/python tools/reference/random_gguf.py OUT.gguf [--shape qwen2.5-1.5b]

qwen2.5-1.5b: architecture qwen2, C = 1536, 28 layers, 12 heads, 2 key/value heads, F = 8960,
V = 151936, tied head, q/k/v biases: 1,543,714,304 parameters, the shape of Qwen2.5-1.5B. Every
matrix is stored as raw random Q4_K blocks (a typical Q4_K download is mostly Q4_K) whose f16
scales are small and finite; norms and biases in F32. No tokenizer (evaluate with --tokenizer
byte). About 0.9 GB. Deterministic.
"""

import argparse

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

SHAPES = {"qwen2.5-1.5b": dict(arch="qwen2", C=1536, L=28, NH=12, NKV=2, F=8960, V=151936, ctx=32768)}


def q4k(rng, rows, cols):
    block, size = gguf.GGML_QUANT_SIZES[Q.Q4_K]
    n = rows * cols // block
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for offset in (0, 2):   # d and dmin: small finite f16
        blocks[:, offset:offset + 2] = np.full(n, 2e-4, dtype=np.float16).view(np.uint8).reshape(n, 2)
    return blocks.reshape(rows, cols // block * size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(SHAPES))
    args = ap.parse_args()
    s = SHAPES[args.shape]
    C, F, NH, NKV = s["C"], s["F"], s["NH"], s["NKV"]
    hs = C // NH
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(args.out, s["arch"])
    a = s["arch"]
    w.add_context_length(s["ctx"]); w.add_embedding_length(C); w.add_block_count(s["L"])
    w.add_feed_forward_length(F); w.add_head_count(NH); w.add_head_count_kv(NKV)
    w.add_layer_norm_rms_eps(1e-6); w.add_rope_freq_base(1e6)

    def mat(name, rows, cols):
        raw = q4k(rng, rows, cols)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=Q.Q4_K)

    def vec(name, n, mean=0.0):
        w.add_tensor(name, (mean + 0.02 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", s["V"], C)
    vec("output_norm.weight", C, 1.0)
    for l in range(s["L"]):
        p = f"blk.{l}."
        vec(p + "attn_norm.weight", C, 1.0)
        mat(p + "attn_q.weight", NH * hs, C); vec(p + "attn_q.bias", NH * hs)
        mat(p + "attn_k.weight", NKV * hs, C); vec(p + "attn_k.bias", NKV * hs)
        mat(p + "attn_v.weight", NKV * hs, C); vec(p + "attn_v.bias", NKV * hs)
        mat(p + "attn_output.weight", C, NH * hs)
        vec(p + "ffn_norm.weight", C, 1.0)
        mat(p + "ffn_gate.weight", F, C); mat(p + "ffn_up.weight", F, C); mat(p + "ffn_down.weight", C, F)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
