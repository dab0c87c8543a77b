#!/usr/bin/env bash
# The small BatchNorm CNN (issue 4) on the full Fashion-MNIST: NormKit and PyTorch in one run,
# interleaved, 2 threads each, 1 epoch per run; prints seconds per epoch (min over runs),
# test accuracies and the ratio, plus the load average before each run (the machine is shared).
#   PEERS=/tmp/peers bash scripts/compare_cnn.sh [REPS]
# Needs: dataset-fashion-mnist, and the peers' venv (../shared/peers/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-1}
PEERS=${PEERS:-/tmp/peers}
PEERS_DIR=${PEERS_DIR:-../shared/peers}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
swift build -c release --product normkit >/dev/null
out=$(mktemp -d)
for rep in $(seq "$REPS"); do
  echo "load before NormKit run $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  taskset -c 0,1 .build/release/normkit train --model cnn --epochs 1 --data "$DATA" --threads 2 --seed "$rep" \
    >"$out/normkit-$rep.txt"
  echo "load before PyTorch run $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
  "$PEERS/venv/bin/python" "$PEERS_DIR/torch_cnn.py" --threads 2 --seed "$rep" --out "$out/torch.jsonl" \
    >"$out/torch-$rep.txt"
done
cat "$out/load.txt"
python3 - "$out" "$REPS" <<'PY'
import json, re, sys, glob
out, reps = sys.argv[1], int(sys.argv[2])
nk_epochs, nk_acc = [], []
for f in sorted(glob.glob(f"{out}/normkit-*.txt")):
    text = open(f).read()
    nk_epochs += [float(s) for s in re.findall(r"Epoch \d+/\d+ - ([\d.]+)s", text)]
    nk_acc.append(float(re.search(r"test_accuracy=([\d.]+)", text).group(1)))
th_epochs, th_acc = [], []
for line in open(f"{out}/torch.jsonl"):
    r = json.loads(line)
    th_epochs += [e["train_s"] for e in r["epochs"]]
    th_acc.append(r["final_test_acc"])
nk, th = min(nk_epochs), min(th_epochs)
print(f"small BN CNN, full Fashion-MNIST, batch 64, 1 epoch, 2 threads, {reps} runs each (min s/epoch)")
print(f"NormKit : {nk:.2f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in nk_acc)}")
print(f"PyTorch : {th:.2f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in th_acc)}")
print(f"ratio NormKit/PyTorch: {nk/th:.3f}  (PyTorch/NormKit: {th/nk:.2f}x)")
PY
