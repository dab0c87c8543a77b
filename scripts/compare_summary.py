#!/usr/bin/env python3
"""Summarises one scripts/compare_speed.sh run directory into a Markdown table of ratios.

Kernel times: the minimum over repetitions of each side's own statistic (NormKit: package-benchmark's
p0 of wall clock; PyTorch: torch.utils.benchmark's median of one blocked_autorange). Seed MLP:
seconds per epoch, the median of epochs 2..end of a run, then the minimum over runs."""
import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_summary import parse  # noqa: E402

out = sys.argv[1]


def jsonl(path):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


# NormKit benchmarks: min over reps of p0 (min) wall clock
normkit = {}
for path in sorted(glob.glob(os.path.join(out, "normkit-bench-*.md"))):
    for name, r in parse(open(path).read()).items():
        if "min_us" not in r:
            continue
        best = normkit.setdefault(name, dict(r))
        best["min_us"] = min(best["min_us"], r["min_us"])
        best["mallocs"] = r.get("mallocs", best.get("mallocs"))

# The same, repetition by repetition: this machine's memory bandwidth changes up to 2x between
# processes, so the per-repetition ratios (each side measured minutes apart) say more than the minima.
def rep_number(path):
    return int(re.search(r"-(\d+)\.md$", path).group(1))


normkit_by_rep = {}
for path in sorted(glob.glob(os.path.join(out, "normkit-bench-*.md")), key=rep_number):
    for name, r in parse(open(path).read()).items():
        if "min_us" in r:
            normkit_by_rep.setdefault(name, []).append(r["min_us"])

torch_kernels, torch_by_rep = {}, {}
for row in jsonl(os.path.join(out, "torch.jsonl")):
    if row.get("bench") != "torch_bn_kernels":
        continue
    for k in row["rows"]:
        key = (k["shape_name"], k["op"])
        torch_kernels[key] = min(torch_kernels.get(key, float("inf")), k["median_us"])
        # Each repetition appends its rows in order, so a shape's k-th row is repetition k.
        torch_by_rep.setdefault(key, []).append(k["median_us"])


def fmt(us):
    if us is None:
        return "–"
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.2f} µs"


lines = ["| work | NormKit | PyTorch | PyTorch / NormKit | note |", "|---|---|---|---|---|"]
shapes = [("1d-32x64", "1d_32x64"),
          ("2d-64x64x56x56-nchw", "2d_64x64x56x56_nchw"),
          ("2d-64x64x56x56-channels-last", "2d_64x64x56x56_channels_last"),
          ("2d-128x256x14x14-nchw", "2d_128x256x14x14_nchw"),
          ("2d-128x256x14x14-channels-last", "2d_128x256x14x14_channels_last")]
ops = [("train-forward", "fwd_train"), ("inference", "fwd_eval"), ("backward", "bwd_op")]
for ours, theirs in shapes:
    memcpy = normkit.get("memcpy/" + re.sub(r"-(nchw|channels-last)$", "", ours), {}).get("min_us")
    inference = normkit.get(f"bn/inference/{ours}", {}).get("min_us")
    for op, top in ops:
        r = normkit.get(f"bn/{op}/{ours}")
        if not r:
            continue
        t = torch_kernels.get((theirs, top)) if theirs else None
        ratio = f"{t / r['min_us']:.2f}×" if t else "–"
        note = []
        if op == "inference" and memcpy:
            note.append(f"memcpy {fmt(memcpy)}: {100 * memcpy / r['min_us']:.0f} % of its bandwidth")
        if op == "train-forward" and inference:
            note.append(f"{r['min_us'] / inference:.2f}× inference")
        if op == "backward" and theirs and torch_kernels.get((theirs, "bwd")):
            note.append(f"PyTorch through autograd: {fmt(torch_kernels[(theirs, 'bwd')])}")
        in_place = normkit.get(f"bn/backward-in-place/{ours}")
        if op == "backward" and in_place:
            ratio_in_place = f" ({t / in_place['min_us']:.2f}× PyTorch)" if t else ""
            note.append(f"dx over dy, as autodiff runs it: {fmt(in_place['min_us'])}{ratio_in_place}")
        note.append(f"mallocs {r.get('mallocs', '-')}")
        per_rep = list(zip(torch_by_rep.get((theirs, top), []), normkit_by_rep.get(f"bn/{op}/{ours}", [])))
        if len(per_rep) > 1:
            ratio += " (" + ", ".join(f"{a / b:.2f}" for a, b in per_rep) + ")"
        lines.append(f"| BN {op} {ours} | {fmt(r['min_us'])} | {fmt(t)} | {ratio} | {'; '.join(note)} |")

# Can "3x PyTorch" be reached at all? Every BN kernel here reads at least the N floats of x (or dy)
# and writes at least N floats (y or dx): at least the bytes a memcpy of x moves. So none can take
# less than memcpy's time in the same repetition, and 3x PyTorch is impossible wherever PyTorch's
# time / 3 is below it. Inference moves exactly memcpy's bytes; the training forward reads x once
# more and the backward three times more, so for them the floor is generous (pass counts would give
# a tighter one, but reads and writes cost differently here, so they give no sound bound). Caveat:
# the bandwidth mode is set per allocation, so a kernel's buffers can be in the fast mode while
# memcpy's are in the slow one (then the kernel beats "the floor", as NCHW inference did once).
floor_lines = ["| work | repetition | PyTorch | PyTorch ÷ 3 | memcpy | NormKit | 3× PyTorch needs |",
               "|---|---|---|---|---|---|---|"]
for ours, theirs in shapes:
    memcpys = normkit_by_rep.get("memcpy/" + re.sub(r"-(nchw|channels-last)$", "", ours), [])
    for op, top in ops:
        for rep, (mem, t, n) in enumerate(zip(memcpys, torch_by_rep.get((theirs, top), []),
                                              normkit_by_rep.get(f"bn/{op}/{ours}", [])), start=1):
            need = 100 * mem / (t / 3)
            # Above 100 %: faster than memcpy moves the bytes, which no kernel here reached in the same mode.
            verdict = f"{need:.0f} % of memcpy's bandwidth" + (" (faster than memcpy)" if need > 100 else "")
            floor_lines.append(f"| BN {op} {ours} | {rep} | {fmt(t)} | {fmt(t / 3)} | {fmt(mem)} | {fmt(n)} | {verdict} |")

info = open(os.path.join(out, "info.txt")).read()
# NormKit's loader (Runtime/OpenBLAS.swift) loads OpenBLAS with OPENBLAS_CORETYPE=SkylakeX on any
# AVX-512 CPU, whatever the environment says; elsewhere OpenBLAS follows the environment.
flags = open("/proc/cpuinfo").read()
coretype = re.search(r"OPENBLAS_CORETYPE=(\S+)", info)
if re.search(r"\bavx512f\b", flags) and re.search(r"\bavx512bw\b", flags):
    coretype = "SkylakeX, set by NormKit's loader"
else:
    coretype = coretype.group(1) if coretype and not coretype.group(1).startswith("unset") else "OpenBLAS's choice"
for size in ["1024x1024x1024", "32x784x64", "256x784x64"]:
    n, o = normkit.get(f"sgemm/native/{size}"), normkit.get(f"sgemm/openblas/{size}")
    if n:
        m, k, nn = map(int, size.split("x"))
        gf = lambda r: 2 * m * k * nn / (r["min_us"] * 1e3)
        lines.append(f"| SGEMM {size} (m×k×n) native | {fmt(n['min_us'])} ({gf(n):.0f} GFLOP/s) | – | "
                     f"native {(o['min_us'] / n['min_us']):.2f}× OpenBLAS's speed | OpenBLAS ({coretype}) {fmt(o['min_us'])} ({gf(o):.0f} GFLOP/s) |"
                     if o else f"| SGEMM {size} native | {fmt(n['min_us'])} ({gf(n):.0f} GFLOP/s) | – | – | OpenBLAS not found |")

for label, path in [("fused, as fit and trainOnBatch run it", "fused"), ("general autodiff graph", "autodiff")]:
    step = normkit.get(f"step/seed-mlp-{path}/batch32")
    if step:
        lines.append(f"| seed-MLP training step (batch 32, {label}) | {fmt(step['min_us'])} | – | – | "
                     f"mallocs per step {step.get('mallocs')} |")


def epochs_normkit(path):
    times = [float(m.group(1)) for m in re.finditer(r"Epoch \d+/\d+ - ([\d.]+)s", open(path).read())]
    tail = times[1:] or times
    return statistics.median(tail) if tail else None


nk = [e for e in (epochs_normkit(p) for p in sorted(glob.glob(os.path.join(out, "normkit-mlp-*.log")))) if e]
pt = [r["median_epoch_s_2_to_end"] for r in jsonl(os.path.join(out, "torch.jsonl")) if r.get("bench") == "torch_seed_mlp"]
ks = [r["median_epoch_s_2_to_end"] for r in jsonl(os.path.join(out, "keras.jsonl"))]
if nk:
    n = min(nk)
    if pt:
        lines.append(f"| seed MLP s/epoch (Fashion-MNIST, batch 32) | {n:.3f} s | {min(pt):.3f} s | {min(pt) / n:.2f}× | goal ≥ 8× |")
    if ks:
        lines.append(f"| seed MLP s/epoch vs Keras+JAX | {n:.3f} s | Keras+JAX {min(ks):.3f} s | {min(ks) / n:.2f}× | goal ≥ 4× |")

print(info.strip())
print("# min over repetitions; measured interleaved in one run\n")
print("\n".join(lines))
if len(floor_lines) > 2:
    print("\n# Every BN kernel moves at least memcpy's bytes: what 3× PyTorch would need, per repetition\n")
    print("\n".join(floor_lines))
