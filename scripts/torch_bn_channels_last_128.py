#!/usr/bin/env python3
"""PyTorch's batch norm on the one issue-5 shape the peers' script does not time:
(128, 256, 14, 14) in channels-last memory format, CPU, float32.

Measured as ../shared/peers/torch_bn_kernels.py measures its shapes, so the rows can sit in the same
table: the median of torch.utils.benchmark's blocked_autorange per op; forward ops under no_grad;
"bwd_op" is aten.native_batch_norm_backward with the saved statistics (the kernel NormKit's
backward benchmark compares with), "bwd" the same through autograd. Appends one JSON line with
bench "torch_bn_kernels" to --out, which scripts/compare_summary.py reads.

Usage: python torch_bn_channels_last_128.py --threads 2 [--min-run-time 0.5] --out torch.jsonl
"""
import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--min-run-time", type=float, default=0.5)
parser.add_argument("--out", required=True)
args = parser.parse_args()

# Pin to as many CPUs as threads and tell every OpenMP runtime before torch loads.
os.sched_setaffinity(0, set(range(args.threads)))
os.environ["OMP_NUM_THREADS"] = str(args.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils import benchmark  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(0)
NAME, SHAPE = "2d_128x256x14x14_channels_last", (128, 256, 14, 14)
EPS, MOMENTUM = 1e-5, 0.1
channels = SHAPE[1]
x = torch.randn(SHAPE).contiguous(memory_format=torch.channels_last)
dy = torch.randn(SHAPE).contiguous(memory_format=torch.channels_last)
weight, bias = torch.rand(channels) + 0.5, torch.randn(channels)
running_mean, running_var = torch.zeros(channels), torch.ones(channels)
_, saved_mean, saved_invstd = torch.ops.aten.native_batch_norm(
    x, weight, bias, running_mean.clone(), running_var.clone(), True, MOMENTUM, EPS)
x_leaf = x.clone().requires_grad_(True)
weight_leaf, bias_leaf = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
y_graph = F.batch_norm(x_leaf, running_mean.clone(), running_var.clone(), weight_leaf, bias_leaf, True,
                       MOMENTUM, EPS)

names = dict(F=F, torch=torch, x=x, dy=dy, w=weight, b=bias, rm=running_mean, rv=running_var,
             sm=saved_mean, si=saved_invstd, xl=x_leaf, wl=weight_leaf, bl=bias_leaf, yg=y_graph,
             EPS=EPS, MOM=MOMENTUM)
statements = {
    "fwd_train": ("F.batch_norm(x, rm, rv, w, b, True, MOM, EPS)", False),
    "fwd_eval": ("F.batch_norm(x, rm, rv, w, b, False, MOM, EPS)", False),
    "bwd_op": ("torch.ops.aten.native_batch_norm_backward(dy, x, w, rm, rv, sm, si, True, EPS, "
               "[True, True, True])", False),
    "bwd": ("torch.autograd.grad(yg, (xl, wl, bl), dy, retain_graph=True)", True),
}
rows = []
for op, (statement, needs_grad) in statements.items():
    timer = benchmark.Timer(stmt=statement, setup=f"torch.set_grad_enabled({needs_grad})", globals=names,
                            num_threads=args.threads)
    timer.timeit(number=3)  # warm-up: first-touch page faults and OpenMP start-up
    measurement = timer.blocked_autorange(min_run_time=args.min_run_time)
    rows.append({"shape_name": NAME, "shape": list(SHAPE), "channels_last": True, "op": op,
                 "median_us": measurement.median * 1e6, "n_measurements": len(measurement.times)})
    print(f"{NAME} {op:10s} median {measurement.median * 1e6:10.2f} us", flush=True)

with open(args.out, "a") as out:
    out.write(json.dumps({"bench": "torch_bn_kernels", "threads": args.threads, "rows": rows,
                          "torch": torch.__version__}) + "\n")
