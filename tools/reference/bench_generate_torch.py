#!/usr/bin/env python3
"""transformers' generate beside `myopia bench`'s generation figures: SmolLM2-135M, tokens/s.

The model is the one `myopia bench` times, the GGUF that `--model smollm2-135m` fetches
(SmolLM2-135M-Instruct Q4_1), which transformers dequantises to fp32 on load (`gguf_file=`): the
same weights as Myopia's fp32 path. The prompt is "The capital of France is" (its ids are checked
against Bench.generatePrompt); each run samples 64 new tokens (temperature 1, top-k off, EOS
ignored: min_new_tokens = max_new_tokens) for N = 1 and 16 sequences at once
(num_return_sequences), on --threads threads; tokens/s = N · 64 / seconds, the prompt included,
median of three runs after one warm-up, as Bench.measureGenerate counts.

With --myopia FILE (the output of `myopia bench --json ...`), it prints Myopia's figure at each N
beside transformers' and the ratio.

  /opt/refenv/bin/python tools/reference/bench_generate_torch.py --threads 2
  myopia bench --json --threads 2 --no-gemm --no-training --no-games --no-horizon --no-tokenizers > m.json
  /opt/refenv/bin/python tools/reference/bench_generate_torch.py --threads 2 --myopia m.json
"""
import argparse
import json
import os
import statistics
import time

PROMPT = "The capital of France is"
PROMPT_IDS = [504, 3575, 282, 4649, 314]  # Bench.generatePrompt
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_folder():
    """Where Myopia's asset store keeps smollm2-135m ($MYOPIA_HOME, else $XDG_CACHE_HOME/myopia, else ~/.cache/myopia)."""
    home = os.environ.get("MYOPIA_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "myopia")
    return os.path.join(home, "smollm2-135m")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 16], help="sequences per generate call")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per sequence")
    ap.add_argument("--folder", default=model_folder(), help="folder holding " + GGUF + " (run `myopia fetch smollm2-135m`)")
    ap.add_argument("--myopia", help="`myopia bench --json` output to compare with")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(args.folder, gguf_file=GGUF, torch_dtype=torch.float32).eval()
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    assert ids[0].tolist() == PROMPT_IDS, f"prompt ids {ids[0].tolist()} differ from Bench.generatePrompt {PROMPT_IDS}"

    def run(n):
        torch.manual_seed(1)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens, num_return_sequences=n, pad_token_id=tokenizer.eos_token_id)
        seconds = time.perf_counter() - start
        assert out.shape == (n, len(PROMPT_IDS) + args.tokens), out.shape
        return seconds

    myopia = {}
    if args.myopia:
        with open(args.myopia) as f:
            for g in json.load(f).get("generate", []):
                if g["weights"] == "fp32" and g["threads"] == args.threads:
                    myopia[g["samples"]] = g["tokens_per_s"]
    results = []
    for n in args.samples:
        run(n)  # warm-up
        seconds = statistics.median(run(n) for _ in range(3))
        rate = n * args.tokens / seconds
        row = {"samples": n, "threads": args.threads, "tokens": args.tokens, "tokens_per_s": rate}
        if n in myopia:
            row["myopia_tokens_per_s"] = myopia[n]
            row["myopia_over_transformers"] = myopia[n] / rate
        results.append(row)
        if not args.json:
            line = f"transformers {transformers.__version__} generate, {n} sequence(s), {args.threads} thread(s): {rate:.1f} tokens/s"
            if n in myopia:
                line += f"; Myopia {myopia[n]:.1f} ({myopia[n] / rate:.2f}x)"
            print(line, flush=True)
    if args.json:
        print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "prompt": PROMPT,
                          "results": results}, indent=1))


if __name__ == "__main__":
    main()
