#!/usr/bin/env bash
# Issue 19, benchmark side, on one H200 in one call (about 8 minutes; PyTorch 2.11, timm 1.0.29): ours against peers
# given the same tricks, fp16, channels_last.
#   inference, batch 1 and 256: ours `fast`, `fast-frozen`, `fast-frozen-mm` (is freezing worth it at 256?) against
#     timm's efficientnet_b0 (B0 only) and `plain` (this project's unfolded module) in `compile-graph` and `tuned`,
#     with each row's memory floor and the closing ratio section;
#   training: the trainer compiled with CUDA graphs (ours-*-compile-graphs) against timm-b0-tuned (batch 256 at
#     224 px) and plain-gpunet0-tuned (batch 192 at 320 px).
# Usage, from the repository root:  OUT=/some/dir bash benchmarks/results/2026-12-03-h200/run.sh   (or pass OUTDIR)
# Writes 6 files to $OUT: gpu.txt, warm.log, run.log (every command and its output), inference-b0.json,
# inference-gpunet0.json, train.json.
#
# Compiling is most of the time (10-25 s a row, about 30 compilations), so phase 1 compiles every configuration in
# parallel processes (PARALLEL at a time) that share one Inductor cache (their timings are thrown away); phase 2 then
# measures one process at a time, loading the compiled graphs from that cache. Triton's autotuning choices made under
# phase 1's contention (*.best_config next to the kernels) are deleted in between, so phase 2 tunes its kernels on a
# quiet GPU.
# Each step has a time limit so the whole stays under LIMIT seconds; the benchmarks write their JSON after every
# row, so a step cut short keeps what it measured.
set -uo pipefail
OUT="${OUT:-${1:?usage: OUT=DIR bash $0, or bash $0 DIR}}"
PY="${PYTHON:-python3}"
LIMIT="${LIMIT:-530}"
mkdir -p "$OUT"
export PYTHONPATH=. IMAGE_CLASSIFICATION_CACHE=/tmp/ic-cache TORCHINDUCTOR_CACHE_DIR=/tmp/ic-cache/inductor
WARM=/tmp/ic-warm
mkdir -p "$WARM" "$TORCHINDUCTOR_CACHE_DIR"

BENCH=("$PY" -m image_classification.benchmark --precision fp16)
OURS=(--modes fast fast-frozen fast-frozen-mm fast-triton)
B0_PEERS=(--peers timm plain --peer-modes compile-graph tuned)
G0_PEERS=(--peers plain --peer-modes compile-graph tuned)
TRAIN=("$PY" benchmarks/train_speed.py --only ours-b0-compile-graphs timm-b0-tuned ours-gpunet0-compile-graphs
       plain-gpunet0-tuned)

say() { printf '+ %s\n' "$*"; }
# Seconds a step may take: PERCENT of what is left before LIMIT, less RESERVE, at least 1 (timeout 0 means forever).
budget() { local t=$(( (LIMIT - SECONDS) * $1 / 100 - ${2:-0} )); (( t < 1 )) && t=1; echo "$t"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  "$PY" -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

# Phase 1: every compilation at once (few timed calls, a bandwidth given so none is measured).
WARM_BENCH=(--iters 1 --warmup 0 --copy-bandwidth-gbs 1)
jobs=(
  "${BENCH[*]} -m efficientnet-b0 -b 1 ${OURS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m efficientnet-b0 -b 256 ${OURS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m efficientnet-b0 -b 1 --modes eager ${B0_PEERS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m efficientnet-b0 -b 256 --modes eager ${B0_PEERS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m gpunet-0 -b 1 ${OURS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m gpunet-0 -b 256 ${OURS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m gpunet-0 -b 1 --modes eager ${G0_PEERS[*]} ${WARM_BENCH[*]}"
  "${BENCH[*]} -m gpunet-0 -b 256 --modes eager ${G0_PEERS[*]} ${WARM_BENCH[*]}"
)
for row in ours-b0-compile-graphs timm-b0-tuned ours-gpunet0-compile-graphs plain-gpunet0-tuned; do
  jobs+=("$PY benchmarks/train_speed.py --only $row --steps 1 --warmup 3 --trainer-steps 6 --print-freq 2")
done
# At most PARALLEL at once: twelve at once (48 compile threads on 16 cores) twice left the lent machine unanswering.
PARALLEL="${PARALLEL:-4}"
echo "phase 1: ${#jobs[@]} processes compile, $PARALLEL at a time (${SECONDS} s)"
for ((first = 0; first < ${#jobs[@]}; first += PARALLEL)); do
  pids=()
  for ((i = first; i < first + PARALLEL && i < ${#jobs[@]}; i++)); do
    say "${jobs[$i]}"
    TORCHINDUCTOR_COMPILE_THREADS=4 timeout -k 10 "$(budget 30)" ${jobs[$i]} > "$WARM/$i.log" 2>&1 &
    pids+=("$i:$!")
  done
  for entry in "${pids[@]}"; do
    wait "${entry#*:}"; rc=$?
    { echo "=== [rc $rc] ${jobs[${entry%%:*}]}"; tail -n 4 "$WARM/${entry%%:*}.log"; } >> "$OUT/warm.log"
  done
done
find "$TORCHINDUCTOR_CACHE_DIR" -name '*.best_config' -delete
echo "phase 1 done at ${SECONDS} s; phase 2 measures one process at a time"

# Phase 2: the measurements.
{
  cmd=("${BENCH[@]}" -m efficientnet-b0 -b 1 256 "${OURS[@]}" "${B0_PEERS[@]}" --iters 100 --warmup 10 --profile
       --json "$OUT/inference-b0.json")
  say "${cmd[*]}"; timeout -k 10 "$(budget 35)" "${cmd[@]}"; echo "[rc $?, ${SECONDS} s]"
  cmd=("${BENCH[@]}" -m gpunet-0 -b 1 256 "${OURS[@]}" "${G0_PEERS[@]}" --iters 100 --warmup 10 --profile
       --json "$OUT/inference-gpunet0.json")
  say "${cmd[*]}"; timeout -k 10 "$(budget 40)" "${cmd[@]}"; echo "[rc $?, ${SECONDS} s]"
  cmd=("${TRAIN[@]}" --steps 30 --warmup 8 --trainer-steps 40 --print-freq 10 --profile --json "$OUT/train.json")
  say "${cmd[*]}"; timeout -k 10 "$(budget 100 15)" "${cmd[@]}"; echo "[rc $?, ${SECONDS} s]"
} 2>&1 | tee "$OUT/run.log"
echo "done in ${SECONDS} s"
