"""Checks folders written by `myopia convert` from Tests/Fixtures/gguf_families/<arch>/model.gguf
with transformers: the logits of `AutoModelForCausalLM.from_pretrained(DIR/<arch>)` against the
reference logits transformers computed on the GGUF itself, and `AutoTokenizer.from_pretrained(DIR/<arch>)`
(the written tokenizer.json) against transformers' GGUF tokenizer's ids. Exits 1 on a mismatch.

    for a in llama qwen2 qwen3 gemma2; do
      myopia convert Tests/Fixtures/gguf_families/$a/model.gguf --out /tmp/conv/$a; done
    /opt/refenv/bin/python tools/reference/gguf_convert_check.py /tmp/conv
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "gguf_families")


def main():
    root = sys.argv[1]
    failed = False
    for arch in ["llama", "qwen2", "qwen3", "gemma2"]:
        ref = load_file(os.path.join(FIXTURES, arch, "reference.safetensors"))
        model = AutoModelForCausalLM.from_pretrained(os.path.join(root, arch), dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        with torch.no_grad():
            logits = model(ref["tokens"][None]).logits[0].double()
        want = ref["logits"].double()
        rel = ((logits - want).norm() / want.norm()).item()
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(root, arch))
        expected = json.load(open(os.path.join(FIXTURES, arch, "expected.json")))
        bad = [t["text"] for t in expected["texts"]
               if tokenizer(t["text"], add_special_tokens=False).input_ids != t["ids"]
               or tokenizer(t["text"], add_special_tokens=True).input_ids != t["ids_with_special"]]
        ok = rel <= 1e-4 and not bad and model.config.model_type == arch
        failed |= not ok
        print(f"{arch}: {type(model).__name__}, logits relative error {rel:.3g}, tokenizer mismatches {bad}, {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
