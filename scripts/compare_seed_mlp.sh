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
print(f"seed MLP, full Fashion-MNIST, batch 32, 2 threads, {reps} runs each (min s/epoch over all epochs)")
print(f"NormKit : {nk:.3f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in nk_acc)}")
print(f"PyTorch : {th:.3f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in th_acc)}")
print(f"ratio NormKit/PyTorch: {nk/th:.3f}  (PyTorch/NormKit: {th/nk:.2f}x)")
PY
