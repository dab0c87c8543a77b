#!/usr/bin/env bash
# Seed MLP on the full Fashion-MNIST: NormKit and PyTorch in one run, interleaved,
# 2 threads each; prints seconds per epoch (min over runs) and the ratio.
#   PEERS=/tmp/peers bash scripts/compare_seed_mlp.sh [REPS]
# Needs: dataset-fashion-mnist, and the peers' venv (../shared/peers/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-2}
PEERS=${PEERS:-/tmp/peers}
PEERS_DIR=${PEERS_DIR:-../shared/peers}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
swift build -c release --product normkit >/dev/null
out=$(mktemp -d)
for rep in $(seq "$REPS"); do
  taskset -c 0,1 .build/release/normkit train --data "$DATA" --threads 2 --seed "$rep" >"$out/normkit-$rep.txt"
  "$PEERS/venv/bin/python" "$PEERS_DIR/torch_seed_mlp.py" --threads 2 --seed "$rep" --out "$out/torch.jsonl" >"$out/torch-$rep.txt"
done
python3 scripts/train_comparison_summary.py "$out" "$REPS" "seed MLP, full Fashion-MNIST, batch 32, 2 threads" 3
