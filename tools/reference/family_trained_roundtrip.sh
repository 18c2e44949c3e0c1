#!/usr/bin/env bash
# A model Myopia trains and saves loads in transformers with the same loss, for every family.
#
# For each family: `myopia train` a small model (30 steps on tiny-shakespeare bytes), `myopia eval`
# its newest checkpoint on a fixed text (8 windows of 33 bytes), then
# tools/reference/family_roundtrip_check.py loads the same folder with
# AutoModelForCausalLM.from_pretrained (eager attention, fp32) and checks that transformers' loss
# on the same windows equals Myopia's (exit 2 otherwise). Prints one line per family.
#
# Usage (from the repo root, after `swift build -c release` and tools/reference/setup.sh):
#   bash tools/reference/family_trained_roundtrip.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-$(mktemp -d)}
python=${PYTHON:-/opt/refenv/bin/python}
myopia=.build/release/myopia
mkdir -p "$work"
"$python" - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
random.seed(1)
words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum".split()
text = " ".join(random.choice(words) for _ in range(200))
open(f"{work}/text.txt", "w").write(text)
data, T = text.encode(), 32
rows = [list(data[i * (T + 1):(i + 1) * (T + 1)]) for i in range(len(data) // (T + 1))][:8]
json.dump({"tokens": rows}, open(f"{work}/tokens.json", "w"))
PY
for family in gpt2 llama gpt_neox qwen2 qwen3 mistral gemma2 olmo2; do
    run="$work/$family"
    rm -rf "$run"
    "$myopia" train --family "$family" --layers 2 --d-model 64 --heads 4 --seq-len 32 --batch 4 --steps 30 \
        --out "$run" > /dev/null 2>&1
    mine=$("$myopia" eval --model "$run" --data "$work/text.txt" --seq-len 32 --max-windows 8 --json \
        | "$python" -c "import json, sys; print(json.load(sys.stdin)['loss'])")
    theirs=$("$python" tools/reference/family_roundtrip_check.py "$run/checkpoint-30" --tokens-json "$work/tokens.json" \
        --expect-loss "$mine" | "$python" -c "import json, sys; d = json.load(sys.stdin); print(d['loss'], d['problems'])")
    echo "$family: myopia $mine, transformers $theirs"
done
