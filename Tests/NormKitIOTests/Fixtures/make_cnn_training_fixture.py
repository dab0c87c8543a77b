#!/usr/bin/env python3
"""Writes cnn_training_pytorch.safetensors: three Adam steps of a small BatchNorm CNN in PyTorch.

    pip install torch safetensors numpy
    python make_cnn_training_fixture.py      # run from this directory

The network has the seed CNN's layer types in the seed CNN's order (peers/torch_cnn.py), only
narrower, so the fixture stays small:

    0 Conv2d(1, 4, 3, padding=1)  1 BatchNorm2d(4)   2 ReLU  3 MaxPool2d(2)
    4 Conv2d(4, 8, 3, padding=1)  5 BatchNorm2d(8)   6 ReLU  7 MaxPool2d(2)
    8 Flatten  9 Linear(8*7*7, 16)  10 BatchNorm1d(16)  11 ReLU  12 Linear(16, 10)

It trains in train mode for three steps of Adam(lr=1e-3) on CrossEntropyLoss, each on a batch of
8 real Fashion-MNIST images (images 0..23 of the training slice embedded in NormKitData, as
torch_cnn.py feeds them: bytes / 255 as float32, shape (8, 1, 28, 28)).

Tensors in the file:
    images            U8  (3, 8, 1, 28, 28)  the raw bytes of the three batches (x = float32(byte) / 255)
    labels            I64 (3, 8)
    losses            F32 (3)                the loss of each step (computed before that step's update)
    initial.<name>    the state_dict before training (weights, BN buffers incl. num_batches_tracked)
    gradient.<name>   F32  each parameter's gradient in step 1
    final.<name>      the state_dict after the three steps (running stats, num_batches_tracked = 3)
    bias_history.<name>  F32 (3, C)  the biases of the layers that feed a BatchNorm (0, 4, 9) as each
                      step's forward used them. Their true gradient is exactly 0 (BN removes any
                      per-channel shift), so Adam moves them by rounding noise; the running means
                      contain them, and the test subtracts that part (see CNNTrainingParityTests).
"""
import gzip
import os

import numpy as np
import torch
from safetensors.torch import save_file

torch.set_num_threads(1)  # one summation order, so the file is reproduced bit for bit
torch.manual_seed(20261126)

SLICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "Sources", "NormKitData",
                     "Resources", "fashion-mnist-slice")


def read_idx(name):
    with gzip.open(os.path.join(SLICE, name), "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


images = torch.from_numpy(read_idx("train-images-idx3-ubyte.gz")[:24].copy()).reshape(3, 8, 1, 28, 28)
labels = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz")[:24].astype(np.int64)).reshape(3, 8)

model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(),
    torch.nn.Linear(8 * 7 * 7, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 10),
)
# BatchNorm's γ and β start at 1 and 0 in both frameworks; make them generic so that a swapped or
# ignored γ/β cannot pass unnoticed.
with torch.no_grad():
    for index in (1, 5, 10):
        model[index].weight.uniform_(0.5, 1.5)
        model[index].bias.uniform_(-0.2, 0.2)

tensors = {"images": images, "labels": labels}
tensors.update({f"initial.{k}": v.clone() for k, v in model.state_dict().items()})
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_function = torch.nn.CrossEntropyLoss()
pre_batchnorm_biases = ["0.bias", "4.bias", "9.bias"]
bias_history = {name: [] for name in pre_batchnorm_biases}
losses = []
model.train()
for step in range(3):
    for name in pre_batchnorm_biases:
        bias_history[name].append(model.state_dict()[name].clone())
    x = images[step].float() / 255
    optimizer.zero_grad()
    loss = loss_function(model(x), labels[step])
    loss.backward()
    if step == 0:
        tensors.update({f"gradient.{k}": p.grad.clone() for k, p in model.named_parameters()})
    optimizer.step()
    losses.append(loss.detach().clone())
assert int(model[1].num_batches_tracked) == 3
tensors["losses"] = torch.stack(losses)
tensors.update({f"final.{k}": v.clone() for k, v in model.state_dict().items()})
tensors.update({f"bias_history.{k}": torch.stack(v) for k, v in bias_history.items()})
save_file(tensors, "cnn_training_pytorch.safetensors", metadata={"format": "pt"})
print("losses", [float(v) for v in losses])
print("wrote cnn_training_pytorch.safetensors with torch", torch.__version__)
