// Batch normalization with ghost batches and Batch Renormalization, and the
// single engine every batch-norm forward and pullback goes through.
//
// The input is cut into groups along the batch axis — one group for plain
// batch norm, one per ghost batch otherwise — and every group is the kernels'
// (outer, channels, inner) view of a contiguous run of the input (axis 0 is
// outermost in row-major order). Each group gets its own per-feature
// constants; the forward folds them into one scale and shift per feature
// (`batchNormApply`), the pullback calls `batchNormBackward` once per group.
// Plain batch norm is the case of one group with r = 1 and d = 0, so it costs
// nothing extra.

/// The running estimates Batch Renormalization corrects the batch statistics
/// toward, and the clipping limits for this step.
///
/// See `batchNorm(_:featureAxis:gamma:beta:epsilon:ghostBatchSize:renormalizingToward:)`.
public struct BatchRenormalizationReference: Sendable {
    /// μ_run per feature.
    public var runningMean: [Float]
    /// The running variance per feature; σ_run = √(running variance + ε).
    public var runningVariance: [Float]
    /// r is clipped to [1/rMax, rMax]; rMax ≥ 1 (1 gives plain batch norm's r = 1).
    public var rMax: Float
    /// d is clipped to [−dMax, dMax]; dMax ≥ 0 (0 gives plain batch norm's d = 0).
    public var dMax: Float

    public init(runningMean: [Float], runningVariance: [Float], rMax: Float, dMax: Float) {
        precondition(rMax >= 1, "Batch Renormalization: rMax must be ≥ 1, got \(rMax)")
        precondition(dMax >= 0, "Batch Renormalization: dMax must be ≥ 0, got \(dMax)")
        precondition(runningMean.count == runningVariance.count,
                     "Batch Renormalization: \(runningMean.count) running means, \(runningVariance.count) variances")
        self.runningMean = runningMean
        self.runningVariance = runningVariance
        self.rMax = rMax
        self.dMax = dMax
    }
}

/// Batch Renormalization's per-feature correction of one (ghost) batch:
/// x̂ = (x − μ_B)/σ_B · r + d, with r and d constants of the step.
public struct RenormalizationCorrection: Sendable, Equatable {
    /// r = clip(σ_B/σ_run, 1/rMax, rMax) per feature.
    public var r: [Float]
    /// d = clip((μ_B − μ_run)/σ_run, −dMax, dMax) per feature.
    public var d: [Float]
}

/// What `batchNorm(_:featureAxis:gamma:beta:epsilon:ghostBatchSize:renormalizingToward:)` computed.
public struct GhostBatchNormResult {
    /// The normalized input, same shape.
    public var output: Tensor
    /// The statistics of each group along the batch axis, in order: one entry
    /// without ghost batches, one per ghost batch otherwise.
    public var statistics: [BatchNormStatistics]
    /// Batch Renormalization's r and d for each group; empty without renormalization.
    public var corrections: [RenormalizationCorrection]
}

/// Batch normalization with batch statistics per ghost batch and optional
/// Batch Renormalization, as one autodiff node.
///
/// **Ghost batches** (Hoffer et al. 2017, https://arxiv.org/abs/1705.08741):
/// the batch is cut along axis 0 into consecutive sub-batches of
/// `ghostBatchSize` samples (the last one may be smaller) and each is
/// normalized with its own mean and biased variance, over its samples and every
/// other non-feature axis. nil: one group, the whole batch.
///
/// **Batch Renormalization** (Ioffe 2017, https://arxiv.org/abs/1702.03275):
/// with σ_B = √(σ²_B + ε) and σ_run = √(running variance + ε),
/// r = clip(σ_B/σ_run, 1/rMax, rMax), d = clip((μ_B − μ_run)/σ_run, −dMax, dMax),
/// and y = γ·(x̂·r + d) + β with x̂ = (x − μ_B)/σ_B. r and d are constants of
/// the step (no gradient flows through them), so
/// dx = γ·r·σ_B⁻¹/m · (m·dy − Σdy − x̂·Σdy·x̂), dγ = Σdy·(x̂·r + d), dβ = Σdy.
/// When r and d are not clipped, x̂·r + d = (x − μ_run)/σ_run: the training
/// output is the inference output, which is the point of the method.
///
/// Shapes: `input` rank ≥ 2 with the batch on axis 0; `featureAxis` must not
/// be 0 when `ghostBatchSize` is given; `gamma`, `beta` and the reference's
/// running estimates hold one value per feature. Every group must hold at least
/// one value per feature (a group of one value has variance 0; the layer
/// rejects that before calling this).
public func batchNorm(
    _ input: Tensor, featureAxis: Int = 1, gamma: Tensor?, beta: Tensor?, epsilon: Float,
    ghostBatchSize: Int?, renormalizingToward reference: BatchRenormalizationReference?
) -> GhostBatchNormResult {
    _batchNorm(input, featureAxis: featureAxis, gamma: gamma, beta: beta, epsilon: epsilon,
               source: .batch(ghostBatchSize: ghostBatchSize, renormalization: reference))
}

// MARK: - The engine

/// Where a batch-norm forward takes its statistics from.
enum _BatchNormSource {
    /// Constants (running estimates): the pullback is dx = dy·γ·invstd.
    case given(mean: [Float], variance: [Float])
    /// The batch's own, per ghost batch when a size is given, optionally renormalized.
    case batch(ghostBatchSize: Int?, renormalization: BatchRenormalizationReference?)
}

/// A contiguous run of the input normalized with its own per-feature constants.
private struct _BatchNormGroup {
    /// The flat elements of the input in this group.
    var elements: Range<Int>
    /// The `outer` extent of this group's (outer, channels, inner) view.
    var outer: Int
    /// μ rounded to Float: the centre subtracted first (see `batchNormApply`).
    var mean: [Float]
    /// μ in Double (for given statistics, `mean` itself).
    var exactMean: [Double]
    var variance: [Float]
    var inverseStandardDeviation: [Float]
    var correction: RenormalizationCorrection?

    /// What the pullback keeps of this group: where it is, μ (as centre and
    /// residual), invstd, and r and d — not x̂, not σ².
    struct SavedForBackward {
        var elements: Range<Int>
        var outer: Int
        var mean: [Float]
        var meanResidual: [Float]
        var inverseStandardDeviation: [Float]
        var correction: RenormalizationCorrection?
    }

    var savedForBackward: SavedForBackward {
        // μ − centre, what rounding μ to Float lost (0 for given statistics).
        let meanResidual = exactMean.indices.map { Float(exactMean[$0] - Double(mean[$0])) }
        return SavedForBackward(elements: elements, outer: outer, mean: mean, meanResidual: meanResidual,
                                inverseStandardDeviation: inverseStandardDeviation, correction: correction)
    }
}

/// The shared implementation of every batch-norm forward: statistics per
/// group, one fused apply per group, and one autodiff node whose pullback runs
/// the fused backward kernel per group.
func _batchNorm(
    _ input: Tensor, featureAxis: Int, gamma: Tensor?, beta: Tensor?, epsilon: Float, source: _BatchNormSource
) -> GhostBatchNormResult {
    let layout = FeatureLayout(shape: input.shape, featureAxis: featureAxis)
    let channels = layout.channels
    for (name, parameter) in [("gamma", gamma), ("beta", beta)] {
        if let parameter {
            precondition(parameter.shape == [channels],
                         "batchNorm: \(name) has shape \(parameter.shape), input \(input.shape) has \(channels) features")
        }
    }
    let inverseStandardDeviation = { (variance: [Float]) in
        variance.map { Float(1 / (Double($0) + Double(epsilon)).squareRoot()) }
    }
    var groups: [_BatchNormGroup] = []
    switch source {
    case let .given(mean, variance):
        precondition(mean.count == channels && variance.count == channels,
                     "batchNorm: statistics for \(mean.count) features, input \(input.shape) has \(channels)")
        groups = [_BatchNormGroup(
            elements: 0..<input.scalarCount, outer: layout.outer, mean: mean,
            exactMean: mean.map { Double($0) },
            variance: variance, inverseStandardDeviation: inverseStandardDeviation(variance), correction: nil)]
    case let .batch(ghostBatchSize, renormalization):
        let runs = _groupRuns(shape: input.shape, layout: layout, featureAxis: featureAxis, ghostBatchSize: ghostBatchSize)
        if let renormalization {
            precondition(renormalization.runningMean.count == channels,
                         "batchNorm: renormalization toward \(renormalization.runningMean.count) features, input \(input.shape) has \(channels)")
        }
        input.withUnsafeBufferPointer { x in
            for run in runs {
                var meanDouble = [Double](repeating: 0, count: channels)
                var varianceDouble = [Double](repeating: 0, count: channels)
                meanDouble.withUnsafeMutableBufferPointer { mu in
                    varianceDouble.withUnsafeMutableBufferPointer { v in
                        batchNormStatistics(UnsafeBufferPointer(rebasing: x[run.elements]), outer: run.outer,
                                            channels: channels, inner: layout.inner, mean: mu, variance: v)
                    }
                }
                let mean = meanDouble.map { Float($0) }
                let variance = varianceDouble.map { Float($0) }
                let invstd = inverseStandardDeviation(variance)
                groups.append(_BatchNormGroup(
                    elements: run.elements, outer: run.outer, mean: mean,
                    exactMean: meanDouble, variance: variance, inverseStandardDeviation: invstd,
                    correction: renormalization.map {
                        _renormalizationCorrection(mean: meanDouble, variance: variance, toward: $0, epsilon: epsilon)
                    }))
            }
        }
    }

    let gammaValues = gamma?.scalars, betaValues = beta?.scalars
    var output = Tensor(shape: input.shape) { y in
        input.withUnsafeBufferPointer { x in
            for group in groups {
                // y = (x − μ_f)·a + (β + γ·d − (μ − μ_f)·a) with a = γ·r·invstd and μ_f
                // the Float mean: centring on μ_f first keeps x − μ exact when |μ| ≫ σ.
                var scale = [Float](repeating: 0, count: channels), shift = [Float](repeating: 0, count: channels)
                for c in 0..<channels {
                    let g = Double(gammaValues?[c] ?? 1)
                    let a = g * Double(group.correction?.r[c] ?? 1) * Double(group.inverseStandardDeviation[c])
                    scale[c] = Float(a)
                    shift[c] = Float(Double(betaValues?[c] ?? 0) + g * Double(group.correction?.d[c] ?? 0)
                                     - (group.exactMean[c] - Double(group.mean[c])) * a)
                }
                scale.withUnsafeBufferPointer { s in
                    shift.withUnsafeBufferPointer { b in
                        group.mean.withUnsafeBufferPointer { mu in
                            batchNormApply(UnsafeBufferPointer(rebasing: x[group.elements]), outer: group.outer,
                                           channels: channels, inner: layout.inner, scale: s, shift: b, center: mu,
                                           output: UnsafeMutableBufferPointer(rebasing: y[group.elements]))
                        }
                    }
                }
            }
        }
    }

    var inputs = [input]
    if let gamma { inputs.append(gamma) }
    if let beta { inputs.append(beta) }
    let x = input.detached()
    let fromBatch: Bool
    if case .batch = source { fromBatch = true } else { fromBatch = false }
    let wantsInputGradient = input.requiresGradient
    let hasGamma = gamma != nil, hasBeta = beta != nil
    let saved = groups.map(\.savedForBackward)
    output.record("batchNorm", inputs: inputs) { g in
        // dx is written over dy, in the output gradient's own storage, when this pullback holds
        // its only reference (backward() passes each node's gradient on and forgets it; a
        // downstream op's pullback made it): the kernel reads every dy before it writes the dx
        // in its place (group by group, each group's sums complete first). No dx to allocate,
        // and the dx sweep writes back lines it has just read instead of fetching a third
        // tensor's lines before overwriting them: the kernel took 0.77–0.86× the time at
        // (64, 64, 56, 56) and (128, 256, 14, 14), NCHW and channels-last, 1 and 2 threads,
        // and `y.sum().backward()` through this pullback 0.55× at (64, 64, 56, 56) (no fresh
        // 51 MB dx for the kernel to fault in page by page) and 0.6–0.8× at (128, 256, 14, 14).
        // A shared dy (the caller's seed, both operands of y + y) gets a new dx as before:
        // copying dy first would cost more than the in-place sweep saves.
        var gradient = consume g
        let inPlace = wantsInputGradient && isKnownUniquelyReferenced(&gradient.storage)
        // Uninitialized: the groups cover the input and batchNormBackward writes all of each
        // (a zeroed array copied into a tensor cost a fill and a copy of the largest activation).
        var dx = Tensor(shape: wantsInputGradient && !inPlace ? x.shape : [0]) { _ in }
        var dGamma = [Double](repeating: 0, count: channels), dBeta = [Double](repeating: 0, count: channels)
        func backwardGroups(_ pg: UnsafeBufferPointer<Float>, _ dx: UnsafeMutableBufferPointer<Float>?) {
            x.withUnsafeBufferPointer { px in
                for group in saved {
                    // The kernel's γ is the effective scale of x̂: γ·r under renormalization.
                    let effectiveGamma: [Float]? = switch (gammaValues, group.correction) {
                    case let (gamma?, correction?): (0..<channels).map { gamma[$0] * correction.r[$0] }
                    case let (nil, correction?): correction.r
                    case let (gamma, nil): gamma
                    }
                    // Σdy·x̂ and Σdy for this group.
                    var sumDyNormalized = [Float](repeating: 0, count: channels)
                    var sumDy = [Float](repeating: 0, count: channels)
                    let elements = group.elements
                    (effectiveGamma ?? []).withUnsafeBufferPointer { gp in
                        group.mean.withUnsafeBufferPointer { mu in
                            group.inverseStandardDeviation.withUnsafeBufferPointer { s in
                                group.meanResidual.withUnsafeBufferPointer { residual in
                                    sumDyNormalized.withUnsafeMutableBufferPointer { dg in
                                        sumDy.withUnsafeMutableBufferPointer { db in
                                            batchNormBackward(
                                                input: UnsafeBufferPointer(rebasing: px[elements]),
                                                outputGradient: UnsafeBufferPointer(rebasing: pg[elements]),
                                                outer: group.outer, channels: channels, inner: layout.inner,
                                                mean: mu, inverseStandardDeviation: s,
                                                gamma: effectiveGamma == nil ? nil : gp,
                                                statisticsFromBatch: fromBatch, meanResidual: residual,
                                                inputGradient: dx.map {
                                                    UnsafeMutableBufferPointer(rebasing: $0[elements])
                                                },
                                                gammaGradient: dg, betaGradient: db)
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // y = γ·(x̂·r + d) + β: dγ = r·Σdy·x̂ + d·Σdy.
                    for c in 0..<channels {
                        let r = Double(group.correction?.r[c] ?? 1), d = Double(group.correction?.d[c] ?? 0)
                        dGamma[c] += r * Double(sumDyNormalized[c]) + d * Double(sumDy[c])
                        dBeta[c] += Double(sumDy[c])
                    }
                }
            }
        }
        if inPlace {
            gradient.withUnsafeMutableBufferPointer { backwardGroups(UnsafeBufferPointer($0), $0) }
        } else {
            gradient.withUnsafeBufferPointer { dy in
                dx.withUnsafeMutableBufferPointer { backwardGroups(dy, wantsInputGradient ? $0 : nil) }
            }
        }
        var gradients: [Tensor?] = [wantsInputGradient ? (inPlace ? gradient : dx) : nil]
        if hasGamma { gradients.append(Tensor(dGamma.map { Float($0) })) }
        if hasBeta { gradients.append(Tensor(dBeta.map { Float($0) })) }
        return gradients
    }
    let statistics = groups.map {
        BatchNormStatistics(mean: $0.mean, variance: $0.variance, inverseStandardDeviation: $0.inverseStandardDeviation,
                            count: $0.outer * layout.inner)
    }
    return GhostBatchNormResult(output: output, statistics: statistics, corrections: groups.compactMap(\.correction))
}

/// The runs of the input that are normalized separately: the whole input, or
/// consecutive ghost batches of `ghostBatchSize` samples along axis 0.
private func _groupRuns(shape: [Int], layout: FeatureLayout, featureAxis: Int, ghostBatchSize: Int?)
    -> [(elements: Range<Int>, outer: Int)] {
    let count = shape.reduce(1, *)
    guard let ghostBatchSize else { return [(0..<count, layout.outer)] }
    precondition(ghostBatchSize > 0, "batchNorm: ghostBatchSize must be positive, got \(ghostBatchSize)")
    let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
    precondition(axis >= 1, "batchNorm: ghost batches split axis 0, so the features cannot be on it (shape \(shape))")
    let samples = shape[0]
    guard samples > 0 else { return [(0..<count, layout.outer)] }
    // Axis 0 is part of `outer` (features are on axis ≥ 1), so each sample is
    // outer/samples rows of the (outer, channels, inner) view.
    let outerPerSample = layout.outer / samples, elementsPerSample = count / samples
    return stride(from: 0, to: samples, by: ghostBatchSize).map { start in
        let end = min(start + ghostBatchSize, samples)
        return (start * elementsPerSample..<end * elementsPerSample, (end - start) * outerPerSample)
    }
}

/// r and d of Batch Renormalization for one group, from its exact mean and
/// (Float) biased variance: σ_B = √(σ² + ε) is the same σ the forward divides by.
private func _renormalizationCorrection(
    mean: [Double], variance: [Float], toward reference: BatchRenormalizationReference, epsilon: Float
) -> RenormalizationCorrection {
    let rMax = Double(reference.rMax), dMax = Double(reference.dMax)
    var r = [Float](repeating: 1, count: mean.count), d = [Float](repeating: 0, count: mean.count)
    for c in mean.indices {
        let batchStd = (Double(variance[c]) + Double(epsilon)).squareRoot()
        let runningStd = (Double(reference.runningVariance[c]) + Double(epsilon)).squareRoot()
        r[c] = Float(min(max(batchStd / runningStd, 1 / rMax), rMax))
        d[c] = Float(min(max((mean[c] - Double(reference.runningMean[c])) / runningStd, -dMax), dMax))
    }
    return RenormalizationCorrection(r: r, d: d)
}
