#!/usr/bin/env bash
# The MPI tests (docs/distributed.md): build with the MPI trait (its own scratch folder, so the
# default build is not redone), then under mpirun, against one process with the same flags:
#   - training with 4 shards on 2 and 3 ranks (3: an uneven split) ends in the same weights,
#     optimiser state and logged losses, bit for bit, under teacher forcing and under each other
#     game (their draws keyed by the global window); the ranks' settings are checked at start;
#   - synthetic recall (under scheduled sampling) and synthetic sine, 4 shards on 2 and 3 ranks:
#     the same models and figures as one process; games on 3 ranks: the same games.json;
#   - eval, horizon, lens and probe on 3 ranks give one process's figures;
#   - gradients and bonus (sharded arms, the local-myopic flow, the gradient split) on 2 and 3
#     ranks give one process's files and figures;
#   - kill -9 of one rank ends the job within 60 s naming the rank, the newest checkpoint loads,
#     and --resume on another number of ranks ends where the uninterrupted run ends;
#   - a binary built without MPI, started by mpirun, refuses in one line.
# Needs Open MPI (tools/ci/install-mpi.sh). Run as root: mpirun --allow-run-as-root.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --traits MPI --scratch-path .build-mpi
bin="$(swift build -c release --traits MPI --scratch-path .build-mpi --show-bin-path)/myopia"
mpirun=(mpirun --allow-run-as-root --oversubscribe)
# In containers without ptrace rights Open MPI's shared-memory single copy (CMA) fails: copy in/out.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "mpi-test: FAIL: $*" >&2; exit 1; }
pass() { echo "mpi-test: ok: $*"; }

cat README.md docs/*.md > "$work/text.txt"
flags=(--data "$work/text.txt" --layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 12 --shards 4 --steps 8
       --warmup 2 --eval-every 4 --eval-windows 8 --log-every 2 --checkpoint-every 4 --quiet)
# The logged figures without the timings (which differ run to run).
losses() { sed -E 's/"(ms_per_step|tokens_per_s|reduce_ms|reduce_bytes)":[^,}]*,?//g' "$1"; }
same_run() {   # same_run A B: the same final checkpoint and the same logged losses
    for f in model.safetensors optimizer.safetensors; do
        cmp -s "$1/checkpoint-$3/$f" "$2/checkpoint-$3/$f" || fail "$2: $f differs from $1's"
    done
    diff <(losses "$1/metrics.jsonl") <(losses "$2/metrics.jsonl") >/dev/null || fail "$2: metrics.jsonl differs from $1's"
}

# 1. Training: one process against 2 and 3 ranks.
"$bin" train "${flags[@]}" --out "$work/one"
for n in 2 3; do
    "${mpirun[@]}" -np "$n" "$bin" train "${flags[@]}" --out "$work/np$n"
    same_run "$work/one" "$work/np$n" 8
    grep -q '"shards" : 4' "$work/np$n/run_config.json" || fail "run_config.json does not record the shards"
    pass "train, 4 shards on $n ranks: the same weights, optimiser state and losses as one process"
done
# The gradient in many small buckets (MYOPIA_BUCKET_MB), started during backward or after it: the same bits.
for overlap in 1 0; do
    MYOPIA_BUCKET_MB=0.01 MYOPIA_OVERLAP=$overlap "${mpirun[@]}" -np 3 -x MYOPIA_BUCKET_MB -x MYOPIA_OVERLAP \
        "$bin" train "${flags[@]}" --out "$work/buckets$overlap"
    same_run "$work/one" "$work/buckets$overlap" 8
done
pass "train on 3 ranks in buckets of 0.01 MiB, started during backward and after it: the same bits as one process"
# Ranks that disagree on the bucket size are refused before any work.
if "${mpirun[@]}" -np 2 sh -c 'MYOPIA_BUCKET_MB=$((OMPI_COMM_WORLD_RANK + 1)) exec "$0" "$@"' \
        "$bin" train "${flags[@]}" --out "$work/bucket-mismatch" > "$work/bucket-mismatch.log" 2>&1; then
    fail "ranks with different MYOPIA_BUCKET_MB were not refused"
fi
grep -q "MYOPIA_BUCKET_MB" "$work/bucket-mismatch.log" || fail "the bucket refusal does not name MYOPIA_BUCKET_MB: $(cat "$work/bucket-mismatch.log")"
pass "ranks with different MYOPIA_BUCKET_MB are refused"

# 1b. The other games in shards: the same bits on 2 and 3 ranks as one process.
for game in "scheduled-sampling --sample-rate 0.3" "consequence --consequence-horizon 2 --consequence-positions 3" \
            "multi-token --prediction-heads 2"; do
    name="${game%% *}"
    read -ra knobs <<< "$game"
    "$bin" train "${flags[@]}" --game "${knobs[@]}" --out "$work/$name-one"
    for n in 2 3; do
        "${mpirun[@]}" -np "$n" "$bin" train "${flags[@]}" --game "${knobs[@]}" --out "$work/$name-np$n"
        same_run "$work/$name-one" "$work/$name-np$n" 8
        grep -q '"game"' "$work/$name-np$n/metrics.jsonl" || fail "$name: metrics.jsonl logs no game statistics"
    done
    pass "train --game $name, 4 shards on 2 and 3 ranks: the same weights, optimiser state, losses and game statistics as one process"
done

# 1c. synthetic: a token task under scheduled sampling, and the sine task (continuous heads).
# (The timings, scalars or one per seed, differ run to run: compared without.)
strip_timings() { sed -E ':a;N;$!ba;s/"(seconds|ms_per_step|tokens_per_s)"[ ]*:[ ]*(\[[^]]*\]|[-0-9.e+]*),?//g' "$1"; }
recall=(synthetic recall --seq-len 16 --names 8 --fillers 8 --cues 2 --layers 1 --heads 2 --d-model 16 --batch 12
        --shards 4 --steps 8 --warmup 2 --eval-every 4 --eval-episodes 32 --flow vanilla
        --game scheduled-sampling --sample-rate 0.5 --quiet)
sine=(synthetic sine --window 3 --layers 1 --heads 2 --d-model 16 --seq-len 16 --batch 12 --shards 4 --steps 8
      --warmup 2 --eval-every 4 --log-every 4 --val-sequences 32 --quiet)
"$bin" "${recall[@]}" --out "$work/recall1" > /dev/null
"$bin" "${sine[@]}" --out "$work/sine1" > /dev/null
for n in 2 3; do
    "${mpirun[@]}" -np "$n" "$bin" "${recall[@]}" --out "$work/recall$n" > /dev/null
    cmp -s "$work/recall1/vanilla/model.safetensors" "$work/recall$n/vanilla/model.safetensors" || fail "synthetic recall on $n ranks: the model differs"
    diff <(strip_timings "$work/recall1/results.json") <(strip_timings "$work/recall$n/results.json") > /dev/null \
        || fail "synthetic recall on $n ranks: results.json differs"
    "${mpirun[@]}" -np "$n" "$bin" "${sine[@]}" --out "$work/sine$n" > /dev/null
    cmp -s "$work/sine1/checkpoint-8/model.safetensors" "$work/sine$n/checkpoint-8/model.safetensors" || fail "synthetic sine on $n ranks: the model differs"
    diff <(strip_timings "$work/sine1/metrics.jsonl") <(strip_timings "$work/sine$n/metrics.jsonl") > /dev/null \
        || fail "synthetic sine on $n ranks: metrics.jsonl differs"
    pass "synthetic recall (scheduled sampling) and sine, 4 shards on $n ranks: the same models and figures as one process"
done

# 1d. games: two games trained on 3 ranks, measured, summarised as one process does.
games=(games --data "$work/text.txt" --games teacher-forced,consequence=0.5 --consequence-horizon 2 --seeds 1
       --layers 1 --d-model 16 --heads 2 --seq-len 16 --batch 12 --shards 4 --steps 6 --warmup 2 --eval-windows 8
       --score-windows 16 --measure-windows 4 --max-offset 4 --draws 1 --samples 2 --max-tokens 8
       --advantage-windows 4 --quiet)
"$bin" "${games[@]}" --out "$work/games1" > /dev/null
"${mpirun[@]}" -np 3 "$bin" "${games[@]}" --out "$work/games3" > /dev/null
diff <(strip_timings "$work/games1/games.json") <(strip_timings "$work/games3/games.json") > /dev/null || fail "games on 3 ranks: games.json differs"
cmp -s "$work/games1/consequence-0.5-seed1/checkpoint-6/model.safetensors" "$work/games3/consequence-0.5-seed1/checkpoint-6/model.safetensors" \
    || fail "games on 3 ranks: the consequence model differs"
pass "games (teacher-forced, consequence) on 3 ranks: the same models and games.json as one process"

# 2. Mismatched ranks are refused at start, naming the rank and what differs.
# The same settings (a relative --data) naming different text in each rank's working folder.
mkdir -p "$work/a" "$work/b"; cp "$work/text.txt" "$work/a/"; cp "$work/text.txt" "$work/b/"
echo "one more line" >> "$work/b/text.txt"
check_refused() {   # check_refused WHAT -- the mpirun arguments
    local what="$1"; shift
    if "${mpirun[@]}" "$@" > "$work/refused.log" 2>&1; then fail "ranks differing in $what were not refused"; fi
    grep -q "rank 1 differs from rank 0 in $what" "$work/refused.log" || { cat "$work/refused.log"; fail "no line names rank 1 and $what"; }
    pass "ranks differing in $what refused at start"
}
relative=("${flags[@]}"); relative[1]="text.txt"
check_refused "the data" -np 1 -wdir "$work/a" "$bin" train "${relative[@]}" --out "$work/bad" : \
    -np 1 -wdir "$work/b" "$bin" train "${relative[@]}" --out "$work/bad"
check_refused "the settings" -np 1 "$bin" train "${flags[@]}" --out "$work/bad" : -np 1 "$bin" train "${flags[@]}" --lr 0.002 --out "$work/bad"
check_refused "the GEMM arithmetic" -np 1 "$bin" train "${flags[@]}" --out "$work/bad" : \
    -np 1 env MYOPIA_KERNEL=portable "$bin" train "${flags[@]}" --out "$work/bad"

# 3. Eval: 3 ranks score their windows, rank 0 reports one process's figures.
eval_flags=(eval --model "$work/one" --data "$work/text.txt" --batch 4 --split all --json)
"$bin" "${eval_flags[@]}" > "$work/eval1.json"
"${mpirun[@]}" -np 3 "$bin" "${eval_flags[@]}" > "$work/eval3.json"
cmp -s "$work/eval1.json" "$work/eval3.json" || { cat "$work/eval1.json" "$work/eval3.json"; fail "eval on 3 ranks differs"; }
pass "eval on 3 ranks: the same loss and position losses as one process"
horizon_flags=(horizon --model "$work/one" --data "$work/text.txt" --sequences 10 --batch 4 --max-offset 8 --json)
"$bin" "${horizon_flags[@]}" > "$work/horizon1.json"
"${mpirun[@]}" -np 3 "$bin" "${horizon_flags[@]}" > "$work/horizon3.json"
cmp -s "$work/horizon1.json" "$work/horizon3.json" || fail "horizon on 3 ranks differs"
pass "horizon on 3 ranks (10 sequences in batches of 4): the same table as one process"
lens_flags=(lens --model "$work/one" --data "$work/text.txt" --max-windows 10 --batch 4 --offsets 0,1,2 --json)
# (Their JSON holds the seconds they took: compared without.)
strip_seconds() { sed -E 's/"seconds[a-z_]*":[-0-9.e+]*,?//g' "$1"; }
"$bin" "${lens_flags[@]}" > "$work/lens1.json"
"${mpirun[@]}" -np 3 "$bin" "${lens_flags[@]}" > "$work/lens3.json"
diff <(strip_seconds "$work/lens1.json") <(strip_seconds "$work/lens3.json") > /dev/null || fail "lens on 3 ranks differs"
pass "lens on 3 ranks: the same table as one process"
probe_flags=(probe --model "$work/one" --data "$work/text.txt" --positions 640 --batch 4 --layers 0,2 --offsets 0,1 --json)
"$bin" "${probe_flags[@]}" > "$work/probe1.json"
"${mpirun[@]}" -np 3 "$bin" "${probe_flags[@]}" > "$work/probe3.json"
diff <(strip_seconds "$work/probe1.json") <(strip_seconds "$work/probe3.json") > /dev/null || fail "probe on 3 ranks differs"
pass "probe on 3 ranks (the hidden-state pass sharded): the same table as one process"

# 4. gradients and bonus: 2 and 3 ranks against one process, bit for bit.
#    gradients: 10 windows in batches of 4 (3 batches: on 2 ranks batches 0 and 2 on rank 0, a
#    partial second round) and of 8 (2 batches: on 3 ranks rank 2 has none); the saved gradients
#    and the JSON are one process's.
for batch in 4 8; do
    grad_flags=(gradients --model "$work/one" --data "$work/text.txt" --seq-len 32 --batch "$batch" --max-windows 10
                --flow myopic --out "$work/grads.safetensors" --json)
    "$bin" "${grad_flags[@]}" > "$work/grads1.json"
    cp "$work/grads.safetensors" "$work/grads1.safetensors"
    for n in 2 3; do
        rm -f "$work/grads.safetensors"
        "${mpirun[@]}" -np "$n" "$bin" "${grad_flags[@]}" > "$work/grads$n.json"
        cmp -s "$work/grads1.json" "$work/grads$n.json" || { cat "$work/grads1.json" "$work/grads$n.json"; fail "gradients (batch $batch) on $n ranks: the JSON differs"; }
        cmp -s "$work/grads1.safetensors" "$work/grads.safetensors" || fail "gradients (batch $batch) on $n ranks: the saved gradients differ"
        pass "gradients (batch $batch) on $n ranks: the same gradients, loss and norm as one process"
    done
done
#    bonus: both arms with 4 shards (the local-myopic one running the frozen reference per shard)
#    and the gradient split logged under shards; bonus.json, each arm's final weights, optimiser
#    state and logged losses are one process's.
bonus_flags=(bonus --reference "$work/one" --data "$work/text.txt" --seq-len 32 --batch 4 --shards 4 --steps 4 --warmup 1
             --eval-every 4 --eval-windows 4 --log-every 2 --checkpoint-every 4 --log-gradient-split 2 --seeds 1 --json)
# (bonus.json holds the seconds each run took: compared without.)
untimed() { sed -E 's/"seconds":(\[[^]]*\]|[-0-9.e+]*),?//g' "$1"; }
"$bin" "${bonus_flags[@]}" --out "$work/bonus1" > "$work/bonus1.json"
for n in 2 3; do
    "${mpirun[@]}" -np "$n" "$bin" "${bonus_flags[@]}" --out "$work/bonus$n" > "$work/bonus$n.json"
    diff <(untimed "$work/bonus1.json") <(untimed "$work/bonus$n.json") > /dev/null || fail "bonus on $n ranks: bonus.json differs"
    for arm in vanilla-seed1 local-myopic-seed1; do
        same_run "$work/bonus1/$arm" "$work/bonus$n/$arm" 4
        grep -q gradient_split "$work/bonus$n/$arm/metrics.jsonl" || fail "bonus on $n ranks: $arm logged no gradient split"
    done
    pass "bonus on $n ranks (4 shards, local-myopic arm, gradient split): the same summary and arms as one process"
done
unsharded=("${bonus_flags[@]}"); unsharded[10]=1   # --shards 1
if "${mpirun[@]}" -np 2 "$bin" "${unsharded[@]}" --out "$work/bonus-refused" > "$work/refused.log" 2>&1; then fail "bonus with 1 shard ran on 2 ranks"; fi
grep -q "shards: expected at least the 2 ranks" "$work/refused.log" || { cat "$work/refused.log"; fail "no line names shards"; }
pass "bonus with fewer shards than ranks refused in one line"

# 5. kill -9 of rank 1: the job ends (60 s liveness bound), the newest checkpoint loads, and
#    --resume on 3 ranks ends bit for bit where one uninterrupted process ends.
long=(--data "$work/text.txt" --layers 2 --d-model 64 --heads 2 --seq-len 64 --batch 12 --shards 4 --steps 300
      --warmup 10 --eval-every 100 --eval-windows 8 --log-every 10 --checkpoint-every 10 --quiet)
"${mpirun[@]}" -np 2 "$bin" train "${long[@]}" --out "$work/killed" > "$work/killed.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -d "$work/killed/checkpoint-20" ] && break; sleep 0.1; done
[ -d "$work/killed/checkpoint-20" ] || fail "the run to be killed saved no checkpoint-20"
victim=""
for p in /proc/[0-9]*; do
    # (Processes that end meanwhile, or are not ours to read, are passed over quietly.)
    if { tr '\0' '\n' < "$p/environ"; } 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" \
        && { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q "myopia train"; then victim="${p#/proc/}"; fi
done
[ -n "$victim" ] || fail "rank 1's process not found"
kill -9 "$victim"
for _ in $(seq 600); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then kill -9 "$job"; fail "the job still runs 60 s after rank 1 was killed"; fi
if wait "$job"; then fail "the job ended with status 0 after rank 1 was killed"; fi
grep -qi "rank 1" "$work/killed.log" || { cat "$work/killed.log"; fail "no message names rank 1"; }
newest=$(ls -d "$work"/killed/checkpoint-* | sort -t- -k2 -n | tail -1)
"$bin" eval --model "$newest" --data "$work/text.txt" --batch 4 --max-windows 4 --json > /dev/null || fail "$newest does not load"
pass "kill -9 of rank 1 ended the job, naming it; $(basename "$newest") loads"
"${mpirun[@]}" -np 3 "$bin" train "${long[@]}" --out "$work/killed" --resume
"$bin" train "${long[@]}" --out "$work/straight"
same_run "$work/straight" "$work/killed" 300
pass "--resume on 3 ranks after the kill ends bit for bit where one process ends"

# 6. A binary built without MPI refuses under mpirun, in one line.
plain="$(swift build -c release --show-bin-path)/myopia"
if [ -x "$plain" ]; then
    if "${mpirun[@]}" -np 2 "$plain" train "${flags[@]}" --out "$work/plain" > "$work/plain.log" 2>&1; then fail "the build without MPI ran under mpirun"; fi
    grep -q "swift build -c release --traits MPI" "$work/plain.log" || { cat "$work/plain.log"; fail "no line says how to build with MPI"; }
    [ ! -d "$work/plain" ] || fail "the build without MPI wrote a run folder under mpirun"
    pass "the build without MPI refuses under mpirun"
fi
echo "mpi-test: all passed"
