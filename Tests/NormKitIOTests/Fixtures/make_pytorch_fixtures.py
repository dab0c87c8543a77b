#!/usr/bin/env python3
"""Writes the safetensors fixtures of NormKitIOTests with PyTorch and the `safetensors` package.

    pip install torch safetensors
    python make_pytorch_fixtures.py          # run from this directory

seed_mlp_pytorch.safetensors
    `state_dict()` of the PyTorch seed model (fc1 Linear(784, 64), bn BatchNorm1d(64),
    fc2 Linear(64, 10)) after three training steps on random data, so that the running
    statistics and `num_batches_tracked` (int64, 3) are not their initial values.
    Saved with `safetensors.torch.save_file`, exactly as a PyTorch user would.
seed_mlp_expected.safetensors
    `inputs` (8, 784) F32 in [0, 1], and `probabilities` (8, 10) F64: softmax of the model's
    eval-mode logits, computed in float64 from the same float32 weights (the reference).
dtypes.safetensors
    `source` (F32) and torch's own conversions of it: `as_f64`, `as_f16`, `as_bf16`
    (round to nearest even; overflow to inf), plus `integers_i64`, `integers_i32`, `integers_u8`.
    NormKit must read each back to the same float32 values torch gives, and write
    F16/BF16/F64 with the same bytes torch writes.
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(7)


class SeedMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 64)
        self.bn = torch.nn.BatchNorm1d(64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


model = SeedMLP()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
model.train()
for _ in range(3):
    x = torch.rand(32, 784)
    y = torch.randint(0, 10, (32,))
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
assert int(model.bn.num_batches_tracked) == 3
save_file(model.state_dict(), "seed_mlp_pytorch.safetensors", metadata={"format": "pt"})

model.eval()
inputs = torch.rand(8, 784)
with torch.no_grad():
    reference = SeedMLP().double()
    reference.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in model.state_dict().items()})
    reference.eval()
    probabilities = torch.softmax(reference(inputs.double()), dim=1)
save_file({"inputs": inputs, "probabilities": probabilities}, "seed_mlp_expected.safetensors")

special = [0.0, -0.0, 1.0, -2.5, 65504.0, 65520.0, 70000.0, 1e-8, 6e-8, 3e-5, 1.0009765625, 1.00048828125,
           1.001953125 + 2 ** -9, 3.0e38, float("inf"), float("-inf"), 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8]
source = torch.cat([torch.tensor(special, dtype=torch.float32), torch.randn(46) * torch.logspace(-6, 6, 46)])
source = source.reshape(8, 8)
integers = torch.tensor([[0, 1, -1, 2 ** 40], [-(2 ** 62), 123456789, 7, 2 ** 24]], dtype=torch.int64)
save_file({
    "source": source,
    "as_f64": source.double(),
    "as_f16": source.half(),
    "as_bf16": source.bfloat16(),
    "integers_i64": integers,
    "integers_i32": torch.tensor([[-(2 ** 31), 2 ** 31 - 1, 0, -5]], dtype=torch.int32),
    "integers_u8": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
}, "dtypes.safetensors")

print("wrote seed_mlp_pytorch.safetensors, seed_mlp_expected.safetensors, dtypes.safetensors with torch", torch.__version__)
