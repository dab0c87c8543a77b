#!/usr/bin/env python3
"""Golden values for NormKit's BatchNorm layer, from the math in NumPy float64.

This is an independent reference: it is written from Ioffe & Szegedy (2015,
Algorithms 1 and 2) and the library conventions in ../../../../shared/BATCHNORM.md
(PyTorch for `newBatchWeight`, `cumulativeAverage` and the unbiased running
variance; Keras for `oldValueWeight` and the biased one), not from NormKit's
Swift code. Everything is computed in float64 from inputs that were first
rounded to float32, so the Swift test feeds NormKit exactly the numbers used
here. The analytic gradients are checked against central finite differences of
the float64 forward before anything is written.

Regenerate (needs only Python 3 and NumPy):

    cd Tests/BatchNormGoldenTests/Fixtures
    python3 make_batchnorm_golden.py

Writes batchnorm_golden.json beside this script. Deterministic: the same NumPy
version and seed reproduce the file byte for byte. If you add or rename a case,
update `Golden.expectedCaseNames` in ../BatchNormGoldenTests.swift as well.

What each case holds (every array flat and row-major in the case's `shape`;
per-feature arrays -- gamma, beta, statistics, dgamma, dbeta -- one value per feature):
- configuration: shape, feature_axis, epsilon, running_average (newBatchWeight /
  oldValueWeight with its value, or cumulativeAverage), affine,
  tracks_running_statistics, unbiased_running_variance, ghost_batch_size (null
  for the whole batch), renormalization (null, or Batch Renormalization's
  schedule: constant r_max/d_max, or linearWarmUp with r_max, d_max,
  plain_steps, r_max_reached_at, d_max_reached_at);
- gamma, beta: random, not 1/0 (null when affine is off);
- training: three (or more) steps on different batches, each with the input x,
  the output y, the batch mean and biased variance, 1/sqrt(var + eps), and the
  running mean, running variance and num_batches_tracked after the step (null
  without tracking); with ghost batches the batch mean is the whole batch's and
  the variance the pooled within-ghost-batch one, sum(m_k var_k)/sum(m_k);
  with renormalization also the limits r_max, d_max of the step and r, d per
  ghost batch and feature (shape (ghost batches, C));
- last_step_gradients: dy and the gradients dx, dgamma, dbeta of sum(dy * y) at
  the last step (the batch statistics depend on x; r and d are constants);
- inference: a fourth batch x and its dy, the statistics used (the running
  estimates; the batch's own when the layer tracks none), y, dx, dgamma, dbeta.

Inputs (x, dy, gamma, beta) are float32 values written as the shortest decimal
that round-trips, so NormKit sees exactly what the reference used; epsilon and
the averaging weight are taken as float32 too, since NormKit's API takes Float.
Expected values are float64 rounded to 12 significant digits.

(The regeneration notes live here rather than in a README.md beside the
fixture: the test target copies only the JSON and excludes only this script,
so any other file in Fixtures/ makes SwiftPM warn about an unhandled file.)
"""

import json
import os

import numpy as np

SEED = 1502_03167  # arXiv 1502.03167, the batch-norm paper
STEPS = 3  # consecutive training steps per case; a 4th batch runs in inference mode

PYTORCH = dict(epsilon=1e-5, running_average=("newBatchWeight", 0.1), unbiased=True)
KERAS = dict(epsilon=1e-3, running_average=("oldValueWeight", 0.99), unbiased=False)
CUMULATIVE = dict(epsilon=1e-5, running_average=("cumulativeAverage", None), unbiased=True)


def f32(values):
    """Values rounded to float32, returned as float64 (exactly representable)."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def as_float32_option(value):
    """NormKit takes epsilon and the averaging weight as Float: use what it sees."""
    return float(np.float32(value))


# ---------------------------------------------------------------------------
# The math


def per_channel(x, axis):
    """x viewed as (m, C): every value that shares a feature in one column."""
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def broadcast(values, ndim, axis):
    """A per-channel vector shaped to broadcast against the input."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


def batch_statistics(x, axis):
    """Mean, biased variance (what normalizes) and the count m per channel."""
    columns = per_channel(x, axis)
    mean = columns.mean(axis=0)
    variance = ((columns - mean) ** 2).mean(axis=0)
    return mean, variance, columns.shape[0]


def normalize(x, axis, mean, variance, eps, gamma, beta):
    """y = γ·(x − μ)/√(σ² + ε) + β, and x̂."""
    invstd = 1.0 / np.sqrt(variance + eps)
    xhat = (x - broadcast(mean, x.ndim, axis)) * broadcast(invstd, x.ndim, axis)
    y = xhat
    if gamma is not None:
        y = y * broadcast(gamma, x.ndim, axis) + broadcast(beta, x.ndim, axis)
    return y, xhat, invstd


def backward_batch_statistics(dy, xhat, invstd, gamma, axis):
    """Gradients of Σ dy·y when μ and σ² are the batch's own (training).

    dβ = Σdy, dγ = Σ dy·x̂,
    dx = γ·invstd/m · (m·dy − Σdy − x̂·Σ(dy·x̂))   (sums over the channel's m values).
    """
    dyc, xhc = per_channel(dy, axis), per_channel(xhat, axis)
    m = dyc.shape[0]
    sum_dy = dyc.sum(axis=0)
    sum_dy_xhat = (dyc * xhc).sum(axis=0)
    g = np.ones_like(invstd) if gamma is None else gamma
    nd = dy.ndim
    dx = (broadcast(g * invstd / m, nd, axis)
          * (m * dy - broadcast(sum_dy, nd, axis) - xhat * broadcast(sum_dy_xhat, nd, axis)))
    return dx, sum_dy_xhat, sum_dy


def backward_constant_statistics(dy, xhat, invstd, gamma, axis):
    """Gradients of Σ dy·y when μ and σ² are constants (inference): dx = dy·γ·invstd."""
    g = np.ones_like(invstd) if gamma is None else gamma
    dyc, xhc = per_channel(dy, axis), per_channel(xhat, axis)
    dx = dy * broadcast(g * invstd, dy.ndim, axis)
    return dx, (dyc * xhc).sum(axis=0), dyc.sum(axis=0)


def ghost_groups(n, ghost):
    """Slices of axis 0: consecutive runs of `ghost` samples (the last may be shorter), or the whole batch."""
    if ghost is None:
        return [slice(0, n)]
    return [slice(start, min(start + ghost, n)) for start in range(0, n, ghost)]


def renorm_limits(spec, step):
    """(r_max, d_max) for the step-th batch (0-based) of Batch Renormalization's schedule."""
    if spec["kind"] == "constant":
        return as_float32_option(spec["r_max"]), as_float32_option(spec["d_max"])
    if spec["kind"] == "linearWarmUp":
        plain = spec["plain_steps"]

        def progress(reached_at):
            return min(max((step - plain) / (reached_at - plain), 0.0), 1.0)

        r_max, d_max = as_float32_option(spec["r_max"]), as_float32_option(spec["d_max"])
        return 1.0 + (r_max - 1.0) * progress(spec["r_max_reached_at"]), d_max * progress(spec["d_max_reached_at"])
    raise ValueError(spec["kind"])


def renorm_correction(mean, var, running_mean, running_var, eps, r_max, d_max):
    """Ioffe (2017): r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max), σ = √(v + ε)."""
    batch_std = np.sqrt(var + eps)
    running_std = np.sqrt(running_var + eps)
    r = np.clip(batch_std / running_std, 1.0 / r_max, r_max)
    d = np.clip((mean - running_mean) / running_std, -d_max, d_max)
    return r, d


def grouped_forward(x, axis, eps, gamma, beta, ghost, corrections=None):
    """Batch statistics per ghost batch; y = γ·(x̂·r + d) + β per group (r = 1, d = 0 without corrections).

    Returns y, the per-group (mean, biased variance, m) and per-group x̂ (before r and d).
    """
    y = np.empty_like(x)
    xhat = np.empty_like(x)
    stats = []
    for k, rows in enumerate(ghost_groups(x.shape[0], ghost)):
        part = x[rows]
        mu, var, m = batch_statistics(part, axis)
        _, xh, invstd = normalize(part, axis, mu, var, eps, None, None)
        r, d = corrections[k] if corrections is not None else (np.ones_like(mu), np.zeros_like(mu))
        z = xh * broadcast(r, x.ndim, axis) + broadcast(d, x.ndim, axis)
        if gamma is not None:
            z = z * broadcast(gamma, x.ndim, axis) + broadcast(beta, x.ndim, axis)
        y[rows] = z
        xhat[rows] = xh
        stats.append((mu, var, m, invstd))
    return y, stats, xhat


def grouped_backward(dy, xhat, stats, gamma, axis, ghost, corrections=None):
    """Gradients of Σ dy·y for `grouped_forward`, r and d constant:
    per group dx = γ·r·invstd/m · (m·dy − Σdy − x̂·Σ(dy·x̂)); dγ = Σ_groups (r·Σdy·x̂ + d·Σdy); dβ = Σdy."""
    dx = np.empty_like(dy)
    channels = stats[0][0].shape[0]
    dgamma, dbeta = np.zeros(channels), np.zeros(channels)
    for k, rows in enumerate(ghost_groups(dy.shape[0], ghost)):
        _, _, _, invstd = stats[k]
        r, d = corrections[k] if corrections is not None else (np.ones(channels), np.zeros(channels))
        scale = r if gamma is None else gamma * r
        dx[rows], sum_dy_xhat, sum_dy = backward_batch_statistics(dy[rows], xhat[rows], invstd, scale, axis)
        dgamma += r * sum_dy_xhat + d * sum_dy
        dbeta += sum_dy
    return dx, dgamma, dbeta


def pooled_statistics(stats):
    """The whole batch's mean and the pooled within-group biased variance Σ m_k σ²_k / Σ m_k, and M, K."""
    total = sum(m for _, _, m, _ in stats)
    mean = sum(m * mu for mu, _, m, _ in stats) / total
    var = sum(m * v for _, v, m, _ in stats) / total
    return mean, var, total, len(stats)


def new_batch_factor(kind, value, batches_tracked):
    """The weight of the new batch in running ← (1 − f)·running + f·batch."""
    if kind == "newBatchWeight":
        return as_float32_option(value)
    if kind == "oldValueWeight":
        return 1.0 - as_float32_option(value)
    if kind == "cumulativeAverage":
        return 1.0 / batches_tracked  # PyTorch's momentum=None
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# Finite-difference check of the analytic gradients (float64, central, h = 1e-6)


def numerical_gradients(forward, x, gamma, beta, dy, h=1e-6):
    def loss(xv, gv, bv):
        return float((forward(xv, gv, bv) * dy).sum())

    def grad(which):
        base = [x, gamma, beta]
        out = np.zeros_like(base[which])
        flat = out.reshape(-1)
        for i in range(flat.size):
            plus = [b.copy() if b is not None else None for b in base]
            minus = [b.copy() if b is not None else None for b in base]
            plus[which].reshape(-1)[i] += h
            minus[which].reshape(-1)[i] -= h
            flat[i] = (loss(*plus) - loss(*minus)) / (2 * h)
        return out

    return grad(0), (grad(1) if gamma is not None else None), (grad(2) if beta is not None else None)


def assert_close(name, analytic, numeric, scale):
    if analytic is None:
        return
    error = np.max(np.abs(analytic - numeric)) / scale
    assert error < 1e-5, f"{name}: analytic and finite-difference gradients differ by {error:.3g} (relative to {scale:.3g})"


# ---------------------------------------------------------------------------
# Cases


def make_batches(rng, shape, axis, count, mean, std, jitter, constant_channel=None):
    """`count` float32 batches; channel c ~ N(mean_c + jitter·N(0,1), (std_c·U(0.8, 1.25))²) per batch."""
    channels = shape[axis]
    batches = []
    for _ in range(count):
        step_mean = mean + jitter * rng.standard_normal(channels)
        step_std = std * rng.uniform(0.8, 1.25, channels)
        z = rng.standard_normal(shape)
        x = broadcast(step_mean, len(shape), axis) + broadcast(step_std, len(shape), axis) * z
        if constant_channel is not None:
            c, value = constant_channel
            np.moveaxis(x, axis, -1)[..., c] = value
        batches.append(f32(x))
    return batches


def run_case(rng, name, description, shape, axis, options, affine=True, tracks=True, data="normal",
             constant_channel=None, ghost=None, renorm=None, steps=STEPS):
    ndim = len(shape)
    ax = axis % ndim
    channels = shape[ax]
    eps = as_float32_option(options["epsilon"])
    kind, value = options["running_average"]
    unbiased = options["unbiased"]
    assert renorm is None or tracks, "Batch Renormalization corrects toward running statistics"

    if data == "normal":
        # Means of either sign away from 0 (so running averages never cancel), stds in [0.5, 2].
        mean = rng.choice([-1.0, 1.0], channels) * rng.uniform(0.5, 2.0, channels)
        std, jitter = rng.uniform(0.5, 2.0, channels), 0.2
    elif data == "mean1e4_std1":
        mean, std, jitter = 1e4 + rng.uniform(-10, 10, channels), np.ones(channels), 0.5
    elif data == "mean100_std1e-3":
        mean, std, jitter = 100 + rng.uniform(-1, 1, channels), np.full(channels, 1e-3), 5e-4
    else:
        raise ValueError(data)
    batches = make_batches(rng, shape, ax, steps + 1, mean, std, jitter, constant_channel)

    if affine:
        gamma = f32(rng.choice([-1.0, 1.0], channels) * rng.uniform(0.5, 1.5, channels))
        beta = f32(rng.uniform(-1.0, 1.0, channels))
    else:
        gamma = beta = None
    dy_train = f32(rng.standard_normal(shape))
    dy_infer = f32(rng.standard_normal(shape))

    running_mean, running_var, tracked = np.zeros(channels), np.ones(channels), 0
    records = []
    for step in range(steps):
        x = batches[step]
        corrections = None
        record = {}
        if renorm is not None:
            # r and d from the running estimates before this batch's update; the step is
            # the number of batches tracked so far.
            r_max, d_max = renorm_limits(renorm, tracked)
            _, stats, _ = grouped_forward(x, ax, eps, None, None, ghost)
            corrections = [renorm_correction(mu, var, running_mean, running_var, eps, r_max, d_max)
                           for mu, var, _, _ in stats]
            record.update(r_max=r_max, d_max=d_max, r=np.array([c[0] for c in corrections]),
                          d=np.array([c[1] for c in corrections]))
        y, stats, xhat = grouped_forward(x, ax, eps, gamma, beta, ghost, corrections)
        mu, var, m, k = pooled_statistics(stats)
        record.update(x=x, y=y, batch_mean=mu, batch_variance=var, inverse_std=1.0 / np.sqrt(var + eps))
        if tracks:
            tracked += 1
            f = new_batch_factor(kind, value, tracked)
            # Unbiased: Σ m_k σ²_k / (M − K), which is σ²·m/(m − 1) for one group.
            stored_var = var * m / (m - k) if unbiased else var
            running_mean = (1 - f) * running_mean + f * mu
            running_var = (1 - f) * running_var + f * stored_var
            record.update(running_mean=running_mean.copy(), running_variance=running_var.copy(),
                          num_batches_tracked=tracked)
        else:
            record.update(running_mean=None, running_variance=None, num_batches_tracked=None)
        records.append((record, corrections, stats, xhat))

    # Gradients of Σ dy·y at the last training step (batch statistics depend on x;
    # r and d are constants of the step).
    _, last_corrections, last_stats, last_xhat = records[-1]
    x = records[-1][0]["x"]
    dx, dgamma, dbeta = grouped_backward(dy_train, last_xhat, last_stats, gamma, ax, ghost, last_corrections)

    def training_forward(xv, gv, bv):
        return grouped_forward(xv, ax, eps, gv, bv, ghost, last_corrections)[0]

    check = numerical_gradients(training_forward, x, gamma, beta, dy_train)
    scale = max(1.0, float(np.max(np.abs(dx))))
    assert_close(f"{name} training dx", dx, check[0], scale)
    if affine:
        assert_close(f"{name} training dgamma", dgamma, check[1], max(1.0, float(np.max(np.abs(dgamma)))))
        assert_close(f"{name} training dbeta", dbeta, check[2], max(1.0, float(np.max(np.abs(dbeta)))))
    gradients = dict(dy=dy_train, dx=dx, dgamma=dgamma if affine else None, dbeta=dbeta if affine else None)

    # Inference on a last batch: running statistics as constants, or the batch's
    # own (per ghost batch, differentiated through) when the layer tracks none.
    x4 = batches[steps]
    if tracks:
        mu, var = running_mean, running_var
        y4, xhat4, invstd4 = normalize(x4, ax, mu, var, eps, gamma, beta)
        dx4, dgamma4, dbeta4 = backward_constant_statistics(dy_infer, xhat4, invstd4, gamma, ax)
        inference_forward = lambda xv, gv, bv: normalize(xv, ax, mu, var, eps, gv, bv)[0]  # noqa: E731
    else:
        y4, stats4, xhat4 = grouped_forward(x4, ax, eps, gamma, beta, ghost)
        mu, var, _, _ = pooled_statistics(stats4)
        invstd4 = 1.0 / np.sqrt(var + eps)
        dx4, dgamma4, dbeta4 = grouped_backward(dy_infer, xhat4, stats4, gamma, ax, ghost)
        inference_forward = lambda xv, gv, bv: grouped_forward(xv, ax, eps, gv, bv, ghost)[0]  # noqa: E731
    check = numerical_gradients(inference_forward, x4, gamma, beta, dy_infer)
    assert_close(f"{name} inference dx", dx4, check[0], max(1.0, float(np.max(np.abs(dx4)))))
    if affine:
        assert_close(f"{name} inference dgamma", dgamma4, check[1], max(1.0, float(np.max(np.abs(dgamma4)))))
        assert_close(f"{name} inference dbeta", dbeta4, check[2], max(1.0, float(np.max(np.abs(dbeta4)))))
    inference = dict(x=x4, dy=dy_infer, y=y4, mean=mu, variance=var, inverse_std=invstd4, dx=dx4,
                     dgamma=dgamma4 if affine else None, dbeta=dbeta4 if affine else None)

    return dict(
        name=name,
        description=description,
        shape=list(shape),
        feature_axis=axis,
        epsilon=options["epsilon"],
        running_average=dict(kind=kind, value=value),
        affine=affine,
        tracks_running_statistics=tracks,
        unbiased_running_variance=unbiased,
        ghost_batch_size=ghost,
        renormalization=renorm,
        gamma=gamma,
        beta=beta,
        training=[record for record, _, _, _ in records],
        last_step_gradients=gradients,
        inference=inference,
    )


def cases(rng):
    yield run_case(rng, "nc_pytorch", "(N, C) = (6, 4), PyTorch defaults", (6, 4), 1, PYTORCH)
    yield run_case(rng, "ncl_pytorch", "(N, C, L) = (3, 4, 5), PyTorch defaults", (3, 4, 5), 1, PYTORCH)
    yield run_case(rng, "nchw_pytorch", "(N, C, H, W) = (2, 3, 4, 5), PyTorch defaults", (2, 3, 4, 5), 1, PYTORCH)
    yield run_case(rng, "ncdhw_pytorch", "(N, C, D, H, W) = (2, 2, 3, 2, 3), PyTorch defaults",
                   (2, 2, 3, 2, 3), 1, PYTORCH)
    yield run_case(rng, "nhwc_pytorch", "channels-last (N, H, W, C) = (2, 3, 4, 5), axis -1, PyTorch options",
                   (2, 3, 4, 5), -1, PYTORCH)
    yield run_case(rng, "nhwc_keras", "channels-last (N, H, W, C) = (2, 3, 4, 5), axis -1, Keras options",
                   (2, 3, 4, 5), -1, KERAS)
    yield run_case(rng, "nc_axis_last_keras", "(N, C) = (6, 4) with axis -1, Keras options", (6, 4), -1, KERAS)
    yield run_case(rng, "nchw_keras", "(N, C, H, W) = (2, 3, 4, 5), axis 1, Keras options", (2, 3, 4, 5), 1, KERAS)
    yield run_case(rng, "ncl_cumulative", "(N, C, L) = (3, 4, 5), cumulative average of the batches",
                   (3, 4, 5), 1, CUMULATIVE)
    yield run_case(rng, "nc_cumulative", "(N, C) = (6, 4), cumulative average of the batches", (6, 4), 1, CUMULATIVE)
    yield run_case(rng, "ncl_no_affine", "(N, C, L) = (3, 4, 5), affine off", (3, 4, 5), 1, PYTORCH, affine=False)
    yield run_case(rng, "nhwc_no_affine", "channels-last (2, 3, 4, 5), affine off, Keras options",
                   (2, 3, 4, 5), -1, KERAS, affine=False)
    yield run_case(rng, "nchw_no_tracking", "(N, C, H, W) = (2, 3, 4, 5), no running statistics: "
                   "batch statistics in both modes", (2, 3, 4, 5), 1, PYTORCH, tracks=False)
    yield run_case(rng, "nc_axis_last_no_tracking", "(N, C) = (6, 4) with axis -1, no running statistics",
                   (6, 4), -1, PYTORCH, tracks=False)
    # A constant channel: variance exactly 0, x̂ = 0, y = β, invstd = 1/√ε (pins ε inside the root).
    yield run_case(rng, "ncl_constant_channel", "(N, C, L) = (3, 4, 5), channel 2 constant 0.75 in every batch",
                   (3, 4, 5), 1, PYTORCH, constant_channel=(2, 0.75))
    # |mean| ≫ std. Float32 at 1e4 has spacing ~1e-3, so std 1e-3 there would be
    # 2–3 distinct values: use mean 1e4 with std 1, and mean 100 with std 1e-3
    # (spacing 7.6e-6, ~130 levels per std). ε = 1e-8 in the latter so that
    # the 1e-6 batch variance, not ε, sets the scale. Cumulative averaging puts
    # the batch statistics themselves into the running estimates.
    yield run_case(rng, "large_mean_1e4_std_1", "(N, C, L) = (4, 3, 8), mean 1e4, std 1, cumulative average",
                   (4, 3, 8), 1, CUMULATIVE, data="mean1e4_std1")
    yield run_case(rng, "large_mean_1e4_std_1_channels_last", "(N, C) = (32, 3) axis -1, mean 1e4, std 1",
                   (32, 3), -1, CUMULATIVE, data="mean1e4_std1")
    yield run_case(rng, "large_mean_100_std_1e-3", "(N, H, W, C) = (4, 2, 4, 3) axis -1, mean 100, std 1e-3, "
                   "epsilon 1e-8, cumulative average", (4, 2, 4, 3), -1,
                   dict(CUMULATIVE, epsilon=1e-8), data="mean100_std1e-3")


    # The biased running variance with PyTorch's momentum (Keras' cases pair it with the old-value weight).
    yield run_case(rng, "nchw_biased_variance", "(N, C, H, W) = (2, 3, 4, 5), newBatchWeight 0.1, biased running variance",
                   (2, 3, 4, 5), 1, dict(PYTORCH, unbiased=False))
    # momentum = None over more batches: the running estimates are the plain mean of all six.
    yield run_case(rng, "nc_cumulative_six_batches", "(N, C) = (5, 3), cumulative average over six batches",
                   (5, 3), 1, CUMULATIVE, steps=6)
    # Batch Renormalization. Initial running estimates (0, 1) are far from the
    # batches' (|μ| ∈ [0.5, 2], σ ∈ [0.5, 2]), so tight limits clip r and d.
    yield run_case(rng, "ncl_renorm_warm_up", "(N, C, L) = (3, 4, 5), renormalization warming up from plain batch "
                   "norm at step 0 to r_max 1.5 (step 2) and d_max 0.5 (step 4)", (3, 4, 5), 1, PYTORCH,
                   renorm=dict(kind="linearWarmUp", r_max=1.5, d_max=0.5, plain_steps=0, r_max_reached_at=2,
                               d_max_reached_at=4))
    yield run_case(rng, "nc_renorm_unclipped", "(N, C) = (8, 4), renormalization with r_max 3, d_max 5: nothing "
                   "clipped, so training normalizes with the running estimates", (8, 4), 1, PYTORCH,
                   renorm=dict(kind="constant", r_max=3.0, d_max=5.0))
    yield run_case(rng, "nhwc_renorm_keras", "channels-last (2, 3, 4, 5), Keras options, renormalization "
                   "r_max 1.2, d_max 0.3", (2, 3, 4, 5), -1, KERAS, renorm=dict(kind="constant", r_max=1.2, d_max=0.3))
    yield run_case(rng, "ncdhw_renorm_no_affine", "(N, C, D, H, W) = (2, 2, 3, 2, 3), affine off, renormalization "
                   "r_max 1.5, d_max 1", (2, 2, 3, 2, 3), 1, PYTORCH, affine=False,
                   renorm=dict(kind="constant", r_max=1.5, d_max=1.0))
    # Ghost batches: 10 samples in ghost batches of 4 are 4 + 4 + 2; 5 in 2s are 2 + 2 + 1.
    yield run_case(rng, "nc_ghost", "(N, C) = (10, 3), ghost batches of 4 (4 + 4 + 2)", (10, 3), 1, PYTORCH, ghost=4)
    yield run_case(rng, "nchw_ghost", "(N, C, H, W) = (5, 3, 2, 2), ghost batches of 2 (2 + 2 + 1)",
                   (5, 3, 2, 2), 1, PYTORCH, ghost=2)
    yield run_case(rng, "nhwc_ghost_keras", "channels-last (5, 2, 2, 3), ghost batches of 3 (3 + 2), Keras options",
                   (5, 2, 2, 3), -1, KERAS, ghost=3)
    yield run_case(rng, "nc_ghost_no_tracking", "(N, C) = (10, 4), ghost batches of 4, no running statistics: "
                   "ghost-batch statistics in both modes", (10, 4), 1, PYTORCH, tracks=False, ghost=4)
    yield run_case(rng, "ncl_ghost_renorm_cumulative", "(N, C, L) = (6, 3, 4), ghost batches of 4 (4 + 2), "
                   "renormalization warming up, cumulative average", (6, 3, 4), 1, CUMULATIVE, ghost=4,
                   renorm=dict(kind="linearWarmUp", r_max=2.0, d_max=1.0, plain_steps=1, r_max_reached_at=3,
                               d_max_reached_at=2))


# ---------------------------------------------------------------------------
# JSON: inputs as the shortest decimal that round-trips their float32 value,
# expected values with 12 significant digits (far below the 1e-5 tolerance).


def input_number(v):
    text = np.format_float_positional(np.float32(v), unique=True, trim="-")
    parsed = float(text)
    # Swift parses a Double and rounds it to Float: that must give the same float32.
    assert np.float32(parsed) == np.float32(v) and float(np.float32(v)) == v, (v, text)
    return parsed


def expected_number(v):
    return float(f"{v:.12g}")


INPUT_KEYS = {"x", "dy", "gamma", "beta"}


def encode(value, key=None):
    if isinstance(value, dict):
        return {k: encode(v, k) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        convert = input_number if key in INPUT_KEYS else expected_number
        return [convert(v) for v in flat]
    return value


def main():
    rng = np.random.default_rng(SEED)
    document = dict(
        generator="make_batchnorm_golden.py (NumPy float64 reference; regenerate with python3 make_batchnorm_golden.py)",
        numpy_version=np.__version__,
        seed=SEED,
        layout="every array is flat, row-major in the case's shape; per-channel arrays have one value per feature",
        cases=[encode(case) for case in cases(rng)],
    )
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batchnorm_golden.json")
    with open(path, "w") as f:
        json.dump(document, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(document['cases'])} cases to {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
