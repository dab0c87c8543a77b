#!/usr/bin/env python3
"""Summarises one compare_seed_mlp.sh / compare_cnn.sh run directory: seconds per epoch (min over
all epochs of all runs) and test accuracy of NormKit (normkit-*.txt, the `normkit train` output) and
PyTorch (torch.jsonl, the peer script's rows), and their ratio.
    train_comparison_summary.py OUT_DIR REPS TITLE [DECIMALS]"""
import glob
import json
import re
import statistics
import sys

out, reps, title = sys.argv[1], int(sys.argv[2]), sys.argv[3]
decimals = int(sys.argv[4]) if len(sys.argv) > 4 else 3
nk_epochs, nk_acc = [], []
for f in sorted(glob.glob(f"{out}/normkit-*.txt"), key=lambda f: int(re.search(r"normkit-(\d+)", f).group(1))):
    text = open(f).read()
    nk_epochs += [float(s) for s in re.findall(r"Epoch \d+/\d+ - ([\d.]+)s", text)]
    nk_acc.append(float(re.search(r"test_accuracy=([\d.]+)", text).group(1)))
th_epochs, th_acc = [], []
for line in open(f"{out}/torch.jsonl"):
    r = json.loads(line)
    th_epochs += [e["train_s"] for e in r["epochs"]]
    th_acc.append((r.get("seed", 0), r["final_test_acc"]))
th_acc = [a for _, a in sorted(th_acc, key=lambda seed_and_acc: seed_and_acc[0])]
nk, th = min(nk_epochs), min(th_epochs)
print(f"{title}, {reps} runs each (min s/epoch over all epochs)")
print(f"NormKit : {nk:.{decimals}f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in nk_acc)}")
print(f"PyTorch : {th:.{decimals}f} s/epoch  test accuracy {', '.join(f'{a:.4f}' for a in th_acc)}")
print(f"ratio NormKit/PyTorch: {nk/th:.3f}  (PyTorch/NormKit: {th/nk:.2f}x)")
if len(nk_acc) > 1 and len(th_acc) > 1:
    for name, acc in (("NormKit", nk_acc), ("PyTorch", th_acc)):
        print(f"{name} test accuracy over {len(acc)} seeds: mean {statistics.mean(acc):.4f}, "
              f"sd {statistics.stdev(acc):.4f}, min {min(acc):.4f}, max {max(acc):.4f}")
