"""Writes the GGUF reader fixtures in Tests/Fixtures/gguf/ with llama.cpp's own Python package.

    /opt/refenv/bin/python tools/reference/gguf_reference.py [--out DIR] [--smollm2 FILE.gguf]

Outputs (deterministic: two runs give byte-identical files):

- tiny.gguf: GGUF v3 written by gguf.GGUFWriter, alignment 64, with one metadata value of every
  GGUF value type (an array of strings and a nested array included) and tensors of types F32, F16,
  BF16, Q8_0 and Q4_1 with non-square shapes (1-D to 4-D). Quantised with gguf.quants.quantize.
- tiny_reference.safetensors: each tensor dequantised to F32 by gguf.quants.dequantize, under the
  same name, in numpy shape (the reverse of the GGUF shape [ne0, ne1, ...]).

- quants.gguf: GGUF v3 written by gguf.GGUFWriter holding, for each block type Myopia dequantises
  (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), one raw tensor of 10 blocks (5 rows
  of 2 blocks) of random bytes, with every f16 scale / min field set to a finite value: 5 blocks
  with values drawn from a sane range (random sign, magnitude 1e-4..3), then blocks whose
  (d, min) are (+0, -0), (-0, +0), (-0, -0), (f16 subnormal, -subnormal) and (large, -large, up to
  65504). The quants, sub-block scales and masks are untouched random bytes.
- quants_reference.safetensors: each of those tensors dequantised to F32 by gguf.quants.dequantize
  (numpy shape: 5 × 2·block size); the metadata key "reference" records the gguf and numpy versions.

With --smollm2 (the `smollm2-135m` asset of `myopia fetch`), also smollm2_probe.json: for every
tensor of that file its GGUF type, shape, float64 sum and sum of squares of the dequantised values
and a few values at fixed flat indices, so the Swift test can check the real file without Python.

The metadata values below are repeated in Tests/MyopiaTests/GGUFTests.swift; change both together.
"""

import argparse
import importlib.metadata
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "gguf")


def tensors(rng):
    """(name, numpy shape, ggml type, float32 values) for tiny.gguf."""
    q8 = rng.normal(0, 1.5, size=(5, 64)).astype(np.float32)
    q8[1, :32] = 0                       # an all-zero block (d = 0)
    q8[2, 32:] *= 1e-4                   # a tiny scale: d = max/127 is an f16 subnormal
    q4 = rng.normal(0.3, 0.8, size=(3, 96)).astype(np.float32)
    q4[0, 32:64] = 0.75                  # a constant block (d = 0, value = m)
    q4[2, :32] = np.linspace(-2, 5, 32)  # a ramp: every nibble 0..15 appears
    f16 = rng.normal(0, 2, size=(3, 4, 6)).astype(np.float32)
    f16[0, 0, :4] = [65504, -6.1e-5, 3e-7, -0.0]   # max, a normal, a subnormal, -0
    return [
        ("token_embd.weight", (5, 64), Q.Q8_0, q8),
        ("blk.0.attn_norm.weight", (7,), Q.F32, rng.normal(1, 0.1, size=(7,)).astype(np.float32)),
        ("blk.0.ffn_up.weight", (3, 96), Q.Q4_1, q4),
        ("f32.matrix", (5, 7), Q.F32, rng.normal(0, 1, size=(5, 7)).astype(np.float32)),
        ("f16.cube", (3, 4, 6), Q.F16, f16),
        ("bf16.matrix", (4, 8), Q.BF16, rng.normal(0, 3, size=(4, 8)).astype(np.float32)),
        ("f32.four_d", (2, 1, 3, 4), Q.F32, np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4) - 11.5),
    ]


def write_tiny(out_dir):
    path = os.path.join(out_dir, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")          # adds general.architecture = "llama"
    w.add_custom_alignment(64)                   # general.alignment (UINT32)
    w.add_uint8("test.uint8", 200)
    w.add_int8("test.int8", -100)
    w.add_uint16("test.uint16", 60000)
    w.add_int16("test.int16", -30000)
    w.add_uint32("test.uint32", 4_000_000_000)
    w.add_int32("test.int32", -2_000_000_000)
    w.add_float32("test.float32", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, wörld ✓")
    w.add_uint64("test.uint64", 2**64 - 1)
    w.add_int64("test.int64", -(2**63))
    w.add_float64("test.float64", -1.0 / 3.0)
    w.add_array("test.strings", ["<s>", "", "Ġthe", "日本"])
    w.add_key_value("test.int32s", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.float32s", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.uint8s", [0, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, sub_type=V.ARRAY)
    w.add_uint32("llama.block_count", 1)

    rng = np.random.default_rng(20240607)
    reference = {}
    for name, shape, qtype, values in tensors(rng):
        assert values.shape == shape
        raw = gguf.quants.quantize(values, qtype)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        deq = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(shape)
        reference[name] = np.ascontiguousarray(deq)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    save_file(reference, os.path.join(out_dir, "tiny_reference.safetensors"), metadata={"gguf": gguf.__name__})
    check_with_reader(path, reference)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and tiny_reference.safetensors")


# Byte offsets of the f16 fields of one block (ggml-common.h): d first, then m / dmin where there is one.
QUANT_F16_FIELDS = {
    Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q5_1: (0, 2), Q.Q8_0: (0,),
    Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,),
}
QUANT_ROWS, QUANT_BLOCKS_PER_ROW = 5, 2


def f16_bits(values):
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def quant_blocks(rng, qtype):
    """10 blocks of random bytes whose f16 fields are finite: 5 drawn from a sane range, then the edges."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = QUANT_ROWS * QUANT_BLOCKS_PER_ROW
    blocks = rng.integers(0, 256, size=(n, type_size), dtype=np.uint8)
    fields = QUANT_F16_FIELDS[qtype]
    # Sane: random sign, magnitude 10^U(-4, 0.5).
    sane = rng.choice([-1.0, 1.0], size=(5, 2)) * 10.0 ** rng.uniform(-4, 0.5, size=(5, 2))
    small = int(rng.integers(1, 0x40))                 # f16 subnormal bits: a tiny one (from 2^-24) ...
    big = int(rng.integers(0x200, 0x400))              # ... and one near the normals (below 2^-14)
    large = int(rng.integers(0x7800, 0x7C00))          # f16 32768 .. 65504
    edges = np.array([
        [0x0000, 0x8000],                              # (+0, -0)
        [0x8000, 0x0000],                              # (-0, +0)
        [0x8000, 0x8000],                              # (-0, -0)
        [small, 0x8000 | big],                         # (subnormal, -subnormal)
        [large, 0x8000 | 0x7BFF],                      # (large, -65504)
    ], dtype=np.uint16)
    bits = np.concatenate([f16_bits(sane), edges], axis=0)
    for k, offset in enumerate(fields):
        blocks[:, offset:offset + 2] = bits[:, k].astype("<u2").view(np.uint8).reshape(n, 2)
    return blocks


def write_quants(out_dir):
    path = os.path.join(out_dir, "quants.gguf")
    w = gguf.GGUFWriter(path, "quants")
    w.add_string("test.purpose", "raw blocks of every type Myopia dequantises, for a bit-exact comparison with gguf.quants.dequantize")
    rng = np.random.default_rng(20250301)
    reference = {}
    for qtype in QUANT_F16_FIELDS:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = quant_blocks(rng, qtype)
        raw = blocks.reshape(QUANT_ROWS, QUANT_BLOCKS_PER_ROW * type_size)
        name = qtype.name.lower()
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        deq = gguf.quants.dequantize(raw, qtype)
        assert deq.dtype == np.float32 and deq.shape == (QUANT_ROWS, QUANT_BLOCKS_PER_ROW * block_size), (name, deq.shape)
        assert np.isfinite(deq).all(), name
        # The edge blocks reach what they are for: signed zeros, and values far from 1.
        flat = deq.reshape(-1, block_size)
        assert (np.signbit(flat[5:8]) & (flat[5:8] == 0)).any(), name
        assert np.abs(flat[9]).max() > 1e4, name
        reference[name] = np.ascontiguousarray(deq)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    versions = {"generator": "tools/reference/gguf_reference.py", "dequantized_by": "gguf.quants.dequantize",
                "gguf": importlib.metadata.version("gguf"), "numpy": np.__version__}
    # One metadata key (safetensors writes several in a random order): the file stays byte-identical.
    save_file(reference, os.path.join(out_dir, "quants_reference.safetensors"),
              metadata={"reference": json.dumps(versions, sort_keys=True)})
    check_with_reader(path, reference, alignment=32)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and quants_reference.safetensors ({versions})")


def check_with_reader(path, reference, alignment=64):
    """Independent check: gguf.GGUFReader sees the same tensors and values."""
    r = gguf.GGUFReader(path)
    assert r.alignment == alignment, r.alignment
    assert len(r.tensors) == len(reference)
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(reference[t.name].shape)
        assert np.array_equal(deq.view(np.uint32), reference[t.name].view(np.uint32)), t.name
        assert list(t.shape) == list(reversed(reference[t.name].shape)), (t.name, t.shape)


def probe_smollm2(path, out_dir):
    r = gguf.GGUFReader(path)
    probes = []
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        d = deq.astype(np.float64)
        n = d.size
        idx = sorted({0, 1, 17, 31, 32, n // 2, n - 1})
        probes.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "sum": float(d.sum()),
            "sum_squares": float((d * d).sum()),
            "indices": idx,
            "values": [float(deq[i]) for i in idx],
        })
    out = os.path.join(out_dir, "smollm2_probe.json")
    with open(out, "w") as f:   # one tensor per line
        f.write('{"file": %s, "dequantized_by": "gguf.quants.dequantize", "tensors": [\n' % json.dumps(os.path.basename(path)))
        f.write(",\n".join(json.dumps(p) for p in probes))
        f.write("\n]}\n")
    print(f"wrote {out} ({len(probes)} tensors)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--smollm2", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (myopia fetch smollm2-135m)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_tiny(args.out)
    write_quants(args.out)
    if args.smollm2:
        probe_smollm2(args.smollm2, args.out)


if __name__ == "__main__":
    main()
