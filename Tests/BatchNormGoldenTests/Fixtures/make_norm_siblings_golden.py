#!/usr/bin/env python3
"""Golden values for NormKit's LayerNorm, GroupNorm and InstanceNorm, in NumPy float64.

An independent reference written from the papers (Ba et al. 2016 for layer
norm, Wu & He 2018 for group norm, Ulyanov et al. 2016 for instance norm) and
PyTorch's documented semantics (nn.LayerNorm, nn.GroupNorm, nn.InstanceNormNd:
biased variance to normalize; instance norm's running estimates average the
per-instance means and *unbiased* per-instance variances over the batch), not
from NormKit's Swift code. Each op is written with NumPy reductions over the
axes it normalizes; the analytic gradients are checked against central finite
differences of the float64 forward before anything is written.

Regenerate (needs only Python 3 and NumPy):

    cd Tests/BatchNormGoldenTests/Fixtures
    python3 make_norm_siblings_golden.py

Writes norm_siblings_golden.json beside this script; deterministic for a given
NumPy version. If you add or rename a case, update `SiblingsGolden.expectedCaseNames`
in ../NormSiblingsGoldenTests.swift as well.

Every case holds its configuration (`kind`: layer_norm / group_norm /
instance_norm, `shape`, `epsilon` and the kind's options), the parameters
`weight` and `bias` (random, not 1/0; null when absent) and `steps`: forwards
in order on different inputs, each with `mode` (training / inference), the
input `x`, the output `y`, the fixed upstream gradient `dy` and the gradients
`dx`, `dweight`, `dbias` of sum(dy * y); for instance norm with running
statistics also `running_mean`, `running_var` after the step. Arrays are flat
and row-major; inputs (x, dy, weight, bias) are float32 values, expected values
float64 rounded to 12 significant digits.
"""

import json
import os

import numpy as np

SEED = 1607_06450  # arXiv 1607.06450, the layer-norm paper


def f32(values):
    """Values rounded to float32, returned as float64 (exactly representable)."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def as_float32_option(value):
    """NormKit takes epsilon and momentum as Float: use what it sees."""
    return float(np.float32(value))


# ---------------------------------------------------------------------------
# The math: normalize over `axes` with the given statistics, and its gradients.


def moments(x, axes):
    """Mean and biased variance over `axes`, kept as broadcastable dims."""
    mean = x.mean(axis=axes, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return mean, variance


def normalized_gradient(dxhat, xhat, invstd, axes):
    """dx for x̂ = (x − μ(x))·invstd(x) over `axes`: invstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))."""
    return invstd * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                     - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


def layer_norm(x, normalized_ndim, eps, weight, bias):
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mean, variance = moments(x, axes)
    invstd = 1.0 / np.sqrt(variance + eps)
    xhat = (x - mean) * invstd
    y = xhat * (1.0 if weight is None else weight) + (0.0 if bias is None else bias)
    return y, (xhat, invstd, axes)


def layer_norm_backward(dy, saved, weight, bias):
    xhat, invstd, axes = saved
    lead = tuple(range(dy.ndim - len(axes)))
    dxhat = dy * (1.0 if weight is None else weight)
    dx = normalized_gradient(dxhat, xhat, invstd, axes)
    dweight = None if weight is None else (dy * xhat).sum(axis=lead)
    dbias = None if bias is None else dy.sum(axis=lead)
    return dx, dweight, dbias


def per_channel(values, ndim):
    """A (C) vector shaped to broadcast against (N, C, S...)."""
    return np.asarray(values).reshape((1, -1) + (1,) * (ndim - 2))


def group_norm(x, groups, eps, weight, bias):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean, variance = moments(grouped, (2,))
    invstd = 1.0 / np.sqrt(variance + eps)
    xhat = ((grouped - mean) * invstd).reshape(x.shape)
    y = xhat
    if weight is not None:
        y = y * per_channel(weight, x.ndim)
    if bias is not None:
        y = y + per_channel(bias, x.ndim)
    return y, (xhat, invstd, groups)


def group_norm_backward(dy, saved, weight, bias):
    xhat, invstd, groups = saved
    n = dy.shape[0]
    not_channel = tuple(i for i in range(dy.ndim) if i != 1)
    dxhat = dy if weight is None else dy * per_channel(weight, dy.ndim)
    dx = normalized_gradient(dxhat.reshape(n, groups, -1), xhat.reshape(n, groups, -1), invstd, (2,))
    dweight = None if weight is None else (dy * xhat).sum(axis=not_channel)
    dbias = None if bias is None else dy.sum(axis=not_channel)
    return dx.reshape(dy.shape), dweight, dbias


def instance_norm(x, eps, weight, bias, running=None):
    """Instance statistics per (n, c) over the spatial axes, or the running (C) ones."""
    spatial = tuple(range(2, x.ndim))
    if running is None:
        mean, variance = moments(x, spatial)
    else:
        mean, variance = per_channel(running[0], x.ndim), per_channel(running[1], x.ndim)
    invstd = 1.0 / np.sqrt(variance + eps)
    xhat = (x - mean) * invstd
    y = xhat
    if weight is not None:
        y = y * per_channel(weight, x.ndim)
    if bias is not None:
        y = y + per_channel(bias, x.ndim)
    return y, (xhat, invstd, spatial, running is not None)


def instance_norm_backward(dy, saved, weight, bias):
    xhat, invstd, spatial, constant_statistics = saved
    not_channel = (0,) + spatial
    dxhat = dy if weight is None else dy * per_channel(weight, dy.ndim)
    dx = dxhat * invstd if constant_statistics else normalized_gradient(dxhat, xhat, invstd, spatial)
    dweight = None if weight is None else (dy * xhat).sum(axis=not_channel)
    dbias = None if bias is None else dy.sum(axis=not_channel)
    return dx, dweight, dbias


# ---------------------------------------------------------------------------
# Finite-difference check (float64, central, h = 1e-6)


def check_gradients(name, forward, x, weight, bias, dy, analytic, h=1e-6):
    def loss(xv, wv, bv):
        return float((forward(xv, wv, bv) * dy).sum())

    for which, (label, expected) in enumerate(zip(("dx", "dweight", "dbias"), analytic)):
        point = [x, weight, bias]
        if point[which] is None:
            continue
        numeric = np.zeros_like(point[which])
        for i in range(numeric.size):
            plus = [None if v is None else v.copy() for v in point]
            minus = [None if v is None else v.copy() for v in point]
            plus[which].reshape(-1)[i] += h
            minus[which].reshape(-1)[i] -= h
            numeric.reshape(-1)[i] = (loss(*plus) - loss(*minus)) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(expected))))
        error = float(np.max(np.abs(expected - numeric))) / scale
        assert error < 1e-5, f"{name} {label}: analytic and finite differences differ by {error:.3g}"


# ---------------------------------------------------------------------------
# Cases


def make_input(rng, shape, offset=0.0, spread=1.0):
    """float32 values with a different centre and spread per leading slice, so mix-ups show."""
    centres = rng.uniform(-2, 2, shape[:2]).reshape(shape[:2] + (1,) * (len(shape) - 2))
    spreads = rng.uniform(0.5, 2, shape[:2]).reshape(centres.shape)
    return f32(offset + spread * (centres + spreads * rng.standard_normal(shape)))


def make_parameters(rng, shape, weight=True, bias=True):
    w = f32(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)) if weight else None
    b = f32(rng.uniform(-1, 1, shape)) if bias else None
    return w, b


def step_record(mode, x, y, dy, gradients):
    dx, dweight, dbias = gradients
    return dict(mode=mode, x=x, y=y, dy=dy, dx=dx, dweight=dweight, dbias=dbias)


def layer_norm_case(rng, name, description, shape, normalized_ndim, epsilon=1e-5, weight=True, bias=True,
                    keras=False, inputs=None):
    eps = as_float32_option(epsilon)
    w, b = make_parameters(rng, shape[len(shape) - normalized_ndim:], weight, bias)
    steps = []
    # The same computation in both modes: LayerNorm has no running statistics.
    for mode, x in zip(("training", "inference"), inputs or (make_input(rng, shape), make_input(rng, shape))):
        dy = f32(rng.standard_normal(shape))
        y, saved = layer_norm(x, normalized_ndim, eps, w, b)
        gradients = layer_norm_backward(dy, saved, w, b)
        check_gradients(name, lambda xv, wv, bv: layer_norm(xv, normalized_ndim, eps, wv, bv)[0],
                        x, w, b, dy, gradients)
        steps.append(step_record(mode, x, y, dy, gradients))
    return dict(name=name, description=description, kind="layer_norm", shape=list(shape), epsilon=epsilon,
                normalized_shape=list(shape[len(shape) - normalized_ndim:]), keras=keras,
                elementwise_affine=weight, bias_enabled=bias, weight=w, bias=b, steps=steps)


def group_norm_case(rng, name, description, shape, groups, affine=True, inputs=None):
    eps = as_float32_option(1e-5)
    w, b = make_parameters(rng, (shape[1],), affine, affine)
    steps = []
    for mode, x in zip(("training", "inference"), inputs or (make_input(rng, shape), make_input(rng, shape))):
        dy = f32(rng.standard_normal(shape))
        y, saved = group_norm(x, groups, eps, w, b)
        gradients = group_norm_backward(dy, saved, w, b)
        check_gradients(name, lambda xv, wv, bv: group_norm(xv, groups, eps, wv, bv)[0], x, w, b, dy, gradients)
        steps.append(step_record(mode, x, y, dy, gradients))
    return dict(name=name, description=description, kind="group_norm", shape=list(shape), epsilon=1e-5,
                group_count=groups, channel_count=shape[1], affine=affine, weight=w, bias=b, steps=steps)


def instance_norm_case(rng, name, description, shape, affine=False, tracks=False, momentum=0.1, training_steps=1,
                       batched=True):
    """Training steps (instance statistics; running estimates move when tracked), then one inference step.

    With `batched` False the input has no batch axis (PyTorch's unbatched (C, S...) input); the math runs on
    it as a batch of one and the fixture stores the unbatched shape.
    """
    eps = as_float32_option(1e-5)
    full_shape = tuple(shape) if batched else (1,) + tuple(shape)
    channels = full_shape[1]
    w, b = make_parameters(rng, (channels,), affine, affine)
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    steps = []
    modes = ["training"] * training_steps + ["inference"]
    for mode in modes:
        x = make_input(rng, full_shape)
        dy = f32(rng.standard_normal(full_shape))
        use_running = tracks and mode == "inference"
        running = (running_mean.copy(), running_var.copy()) if use_running else None
        y, saved = instance_norm(x, eps, w, b, running)
        gradients = instance_norm_backward(dy, saved, w, b)
        check_gradients(name, lambda xv, wv, bv: instance_norm(xv, eps, wv, bv, running)[0], x, w, b, dy, gradients)
        if tracks and mode == "training":
            spatial = tuple(range(2, x.ndim))
            count = int(np.prod(full_shape[2:]))
            instance_mean = x.mean(axis=spatial)                                   # (N, C)
            instance_var = x.var(axis=spatial) * count / (count - 1)               # unbiased, (N, C)
            f = as_float32_option(momentum)
            running_mean = (1 - f) * running_mean + f * instance_mean.mean(axis=0)
            running_var = (1 - f) * running_var + f * instance_var.mean(axis=0)
        unbatch = (lambda a: a.reshape(shape)) if not batched else (lambda a: a)
        record = step_record(mode, unbatch(x), unbatch(y), unbatch(dy), (unbatch(gradients[0]),) + gradients[1:])
        if tracks:
            record.update(running_mean=running_mean.copy(), running_var=running_var.copy())
        steps.append(record)
    return dict(name=name, description=description, kind="instance_norm", shape=list(shape), epsilon=1e-5,
                spatial_rank=len(full_shape) - 2, affine=affine, tracks_running_statistics=tracks,
                momentum=momentum, weight=w, bias=b, steps=steps)


def cases(rng):
    yield layer_norm_case(rng, "layer_norm_last_axis", "LayerNorm(6) on (4, 6)", (4, 6), 1)
    yield layer_norm_case(rng, "layer_norm_two_axes", "LayerNorm([4, 5]) on (3, 4, 5): weight shaped (4, 5)",
                          (3, 4, 5), 2)
    yield layer_norm_case(rng, "layer_norm_sequence", "LayerNorm(8) on (2, 3, 8): every (n, t) its own row",
                          (2, 3, 8), 1)
    yield layer_norm_case(rng, "layer_norm_no_bias", "LayerNorm(5, bias: false) on (4, 5)", (4, 5), 1, bias=False)
    yield layer_norm_case(rng, "layer_norm_no_affine", "LayerNorm([3, 4], elementwiseAffine: false) on (2, 3, 4)",
                          (2, 3, 4), 2, weight=False, bias=False)
    yield layer_norm_case(rng, "layer_norm_keras", "Keras LayerNormalization() on (5, 6): epsilon 1e-3",
                          (5, 6), 1, epsilon=1e-3, keras=True)
    # |mean| ≫ std per row: mean 1e4 with std 1 and mean 100 with std 1e-3 (float32 spacing there is
    # 7.6e-6, so the values are distinct); a constant row has variance 0, output β, invstd 1/√ε.
    large = (f32(1e4 + rng.standard_normal((4, 8))), f32(100 + 1e-3 * rng.standard_normal((4, 8))))
    yield layer_norm_case(rng, "layer_norm_large_mean", "LayerNorm(8) on (4, 8): rows at mean 1e4 (std 1), "
                          "then at mean 100 (std 1e-3)", (4, 8), 1, inputs=large)
    constant = make_input(rng, (3, 6))
    constant[1, :] = 0.75
    yield layer_norm_case(rng, "layer_norm_constant_row", "LayerNorm(6) on (3, 6) with row 1 constant 0.75",
                          (3, 6), 1, inputs=(constant, make_input(rng, (3, 6))))

    yield group_norm_case(rng, "group_norm_ncl", "GroupNorm(2 groups, 6 channels) on (3, 6, 5)", (3, 6, 5), 2)
    yield group_norm_case(rng, "group_norm_nchw", "GroupNorm(3 groups, 6 channels) on (2, 6, 2, 3)", (2, 6, 2, 3), 3)
    yield group_norm_case(rng, "group_norm_nc", "GroupNorm(2 groups, 4 channels) on (5, 4): no spatial axes",
                          (5, 4), 2)
    yield group_norm_case(rng, "group_norm_one_group", "GroupNorm(1 group, 4 channels) on (2, 4, 3)", (2, 4, 3), 1)
    yield group_norm_case(rng, "group_norm_instance_groups", "GroupNorm(4 groups, 4 channels) on (2, 4, 6)",
                          (2, 4, 6), 4)
    yield group_norm_case(rng, "group_norm_no_affine", "GroupNorm(2 groups, 6 channels, affine: false) on "
                          "(2, 6, 4)", (2, 6, 4), 2, affine=False)
    yield group_norm_case(rng, "group_norm_batch_of_one", "GroupNorm(2 groups, 4 channels) on (1, 4, 5)",
                          (1, 4, 5), 2)

    yield instance_norm_case(rng, "instance_norm_1d", "InstanceNorm1d(4) on (3, 4, 5): PyTorch defaults",
                             (3, 4, 5))
    yield instance_norm_case(rng, "instance_norm_1d_unbatched", "InstanceNorm1d(3) on unbatched (3, 7)",
                             (3, 7), batched=False)
    yield instance_norm_case(rng, "instance_norm_2d_affine", "InstanceNorm2d(3, affine: true) on (2, 3, 4, 4)",
                             (2, 3, 4, 4), affine=True)
    yield instance_norm_case(rng, "instance_norm_3d", "InstanceNorm3d(2) on (2, 2, 2, 3, 3)", (2, 2, 2, 3, 3))
    yield instance_norm_case(rng, "instance_norm_2d_tracked", "InstanceNorm2d(3, affine: true, "
                             "tracksRunningStatistics: true): 3 training steps, then inference with the running "
                             "estimates", (4, 3, 3, 4), affine=True, tracks=True, training_steps=3)
    yield instance_norm_case(rng, "instance_norm_1d_tracked_no_affine", "InstanceNorm1d(4, "
                             "tracksRunningStatistics: true) with newBatchWeight 0.25: 2 training steps, then "
                             "inference", (3, 4, 6), tracks=True, momentum=0.25, training_steps=2)


# ---------------------------------------------------------------------------
# Output


def shortest_float32(value):
    """The shortest decimal that round-trips to the same float32."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def to_json(value, key=""):
    inputs = {"x", "dy", "weight", "bias"}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {k: to_json(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not isinstance(value, np.ndarray):
        return [to_json(v, key) for v in value]
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if key in inputs:
        return [shortest_float32(v) for v in flat]
    return [float(f"{v:.12g}") for v in flat]


def main():
    rng = np.random.default_rng(SEED)
    fixture = dict(
        generator="make_norm_siblings_golden.py (NumPy float64 reference; regenerate with "
                  "python3 make_norm_siblings_golden.py)",
        numpy_version=np.__version__,
        seed=SEED,
        layout="every array is flat, row-major; weight and bias are shaped like the normalized dims "
               "(layer norm) or hold one value per channel (group and instance norm)",
        cases=[to_json(case) for case in cases(rng)],
    )
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norm_siblings_golden.json")
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(fixture['cases'])} cases to {path}")


if __name__ == "__main__":
    main()
