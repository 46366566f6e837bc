#!/usr/bin/env bash
# The GPU checks of issue 17, as one script for a machine with NVIDIA GPUs, PyTorch and
# the CUDA driver but no Rust toolchain: build the binary here and send it along,
#
#   cargo build --release --features cuda && strip -o sinkscope-cuda target/release/sinkscope
#   scripts/gpu-check.sh ./sinkscope-cuda OUT        # on the GPU machine, from the repo root
#
# It writes OUT/summary.txt (and each run's logs under OUT/):
#   1. the driver check and the GPUs seen;
#   2. the same 20 quick-recipe steps on the CPU and on cuda: the losses agree;
#   3. recipes/gu-60m.toml's model (rope) on cuda from token shards: tokens/s of full
#      optimiser steps with the hooks off, then with them on (the hook cost);
#   4. PyTorch eager on the same model and GPU (benches/torch_peer.py --gu60m);
#   5. with two or more GPUs: data parallelism over two of them against one GPU with the
#      same global batch (losses agree) and its tokens/s.
# DEVICE=cpu runs the same script on the CPU with tiny sizes (a dry run of the script).
set -euo pipefail
BIN=$(realpath "${1:?usage: gpu-check.sh SINKSCOPE_BINARY OUT}")
OUT=$(realpath -m "${2:?usage: gpu-check.sh SINKSCOPE_BINARY OUT}")
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
STEPS=${STEPS:-40}
BATCH=${BATCH:-16}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
SUMMARY="$OUT/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
: > "$SUMMARY"

# The training losses a run's log printed (`--set train.log_every=1`), one per line.
losses() { grep -o 'train step=[0-9]* loss="[^"]*"' "$1" | sed 's/.*loss="\(.*\)"/\1/'; }
# Largest relative difference of two loss lists (printed to 4 decimals).
agree() { "$PY" -c 'import sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) and a, (len(a), len(b))
print(f"{len(a)} steps, largest relative difference {max(abs(x - y) / abs(x) for x, y in zip(a, b)):.2e}")' "$1" "$2"; }
# The tokens/s the run printed last.
speed() { grep -o '[0-9.]* tokens/s' "$1" | tail -1; }

say "== 1. devices"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi -L | tee -a "$SUMMARY"
  GPUS=$(nvidia-smi -L | wc -l)
else
  GPUS=2
fi
"$BIN" --version | tee -a "$SUMMARY"

say "== 2. quick recipe, 20 steps: cpu against $DEVICE"
quick=(recipes/quick.toml --set train.steps=20 --set train.eval_every=20 --set train.log_every=1)
"$BIN" train "${quick[@]}" --out "$OUT/quick-cpu" > "$OUT/quick-cpu.log" 2>&1
"$BIN" train "${quick[@]}" --set device="$DEVICE" --out "$OUT/quick-dev" > "$OUT/quick-dev.log" 2>&1
losses "$OUT/quick-cpu.log" > "$OUT/quick-cpu.loss"
losses "$OUT/quick-dev.log" > "$OUT/quick-dev.loss"
say "losses cpu vs $DEVICE: $(agree "$OUT/quick-cpu.loss" "$OUT/quick-dev.loss")"

say "== 3. gu-60m (rope) on $DEVICE from token shards, batch $BATCH, $STEPS steps"
# A BPE tokenizer of the test fixtures on the KJV text; the model keeps gu-60m's
# vocabulary of 50,432, so the step costs what it costs on the Pile.
"$BIN" tokenize datasets/kjv/train.txt.gz datasets/kjv/heldout.txt.gz --heldout-every 2 --tokenizer tests/fixtures/hf/llama/tokenizer.json \
  --out "$OUT/shards" > "$OUT/tokenize.log" 2>&1
say "tokenize: $(tail -n 3 "$OUT/tokenize.log" | head -n 2)"
gu=(recipes/gu-60m.toml --only rope --set device="$DEVICE" --set data.shards="$OUT/shards"
    --set train.steps="$STEPS" --set train.batch_size="$BATCH" --set train.accumulate=1
    --set train.warmup_steps=1 --set train.eval_every="$STEPS" --set train.eval_batches=1
    --set train.checkpoint_every="$STEPS" --set train.log_every=1 --set hooks.probes=4)
"$BIN" train "${gu[@]}" --set hooks.enabled=false --out "$OUT/gu-nohooks" > "$OUT/gu-nohooks.log" 2>&1
say "sinkscope, hooks off: $(speed "$OUT/gu-nohooks.log")"
"$BIN" train "${gu[@]}" --out "$OUT/gu-hooks" > "$OUT/gu-hooks.log" 2>&1
say "sinkscope, hooks on (log schedule): $(speed "$OUT/gu-hooks.log")"

say "== 4. PyTorch eager, same model, $DEVICE"
"$PY" benches/torch_peer.py --gu60m --sdpa --device "$DEVICE" --batch "$BATCH" \
  --steps "$STEPS" 2>&1 | tee -a "$SUMMARY"

if [ "$GPUS" -ge 2 ]; then
  say "== 5. data parallelism: two devices against one, the same global batch"
  if [ "$DEVICE" = cuda ]; then two='["cuda:0","cuda:1"]'; else two='["cpu","cpu"]'; fi
  dp=("${gu[@]}" --set hooks.enabled=false --set train.batch_size=$((BATCH / 2)))
  "$BIN" train "${dp[@]}" --set train.accumulate=2 --out "$OUT/dp-one" > "$OUT/dp-one.log" 2>&1
  "$BIN" train "${dp[@]}" --set "devices=$two" --out "$OUT/dp-two" > "$OUT/dp-two.log" 2>&1
  losses "$OUT/dp-one.log" > "$OUT/dp-one.loss"
  losses "$OUT/dp-two.log" > "$OUT/dp-two.loss"
  say "one device (accumulate 2): $(speed "$OUT/dp-one.log"); two devices: $(speed "$OUT/dp-two.log")"
  say "losses one vs two devices: $(agree "$OUT/dp-one.loss" "$OUT/dp-two.loss")"
fi
say "== done"
