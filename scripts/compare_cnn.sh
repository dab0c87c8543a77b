#!/usr/bin/env bash
# The small BatchNorm CNN (issue 4) on the full Fashion-MNIST: NormKit and PyTorch in one run,
# interleaved, 2 threads each, 1 epoch per run; prints seconds per epoch (min over runs),
# test accuracies and the ratio, plus the load average before each run (the machine is shared).
#   PEERS=/tmp/peers bash scripts/compare_cnn.sh [REPS]
# Run r uses seed FIRST_SEED + r - 1 (FIRST_SEED defaults to 1; FIRST_SEED=0 REPS=10 gives seeds 0-9,
# and the summary then adds each side's mean and spread of test accuracy).
# Needs: dataset-fashion-mnist, and the peers' venv (../shared/peers/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-1}
FIRST_SEED=${FIRST_SEED:-1}
PEERS=${PEERS:-/tmp/peers}
PEERS_DIR=${PEERS_DIR:-../shared/peers}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
swift build -c release --product normkit >/dev/null
out=$(mktemp -d)
for rep in $(seq "$REPS"); do
  seed=$((FIRST_SEED + rep - 1))
  echo "load before NormKit run $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  taskset -c 0,1 .build/release/normkit train --model cnn --epochs 1 --data "$DATA" --threads 2 --seed "$seed" \
    >"$out/normkit-$rep.txt"
  echo "load before PyTorch run $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  "$PEERS/venv/bin/python" "$PEERS_DIR/torch_cnn.py" --threads 2 --seed "$seed" --out "$out/torch.jsonl" \
    >"$out/torch-$rep.txt"
done
cat "$out/load.txt"
python3 scripts/train_comparison_summary.py "$out" "$REPS" "small BN CNN, full Fashion-MNIST, batch 64, 1 epoch, 2 threads" 2
