/// What a batch-norm forward normalized with, per channel.
public struct BatchNormStatistics: Sendable {
    /// μ per channel.
    public var mean: [Float]
    /// The biased variance σ² per channel (what normalized the batch).
    public var variance: [Float]
    /// 1/√(σ² + ε) per channel.
    public var inverseStandardDeviation: [Float]
    /// Elements per channel that produced the statistics.
    public var count: Int
    /// Whether every statistic is finite (a NaN or ∞ in the batch makes it false).
    public var isFinite: Bool { mean.allSatisfy(\.isFinite) && variance.allSatisfy(\.isFinite) }
}

/// How a tensor's axes map onto the kernels' (outer, channels, inner) view.
public struct FeatureLayout: Sendable, Equatable {
    public var outer: Int, channels: Int, inner: Int

    /// The view of `shape` with the features on `featureAxis` (negative counts from the end).
    public init(shape: [Int], featureAxis: Int) {
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        precondition(axis >= 0 && axis < shape.count, "feature axis \(featureAxis) is out of range for shape \(shape)")
        outer = shape[..<axis].reduce(1, *)
        channels = shape[axis]
        inner = shape[(axis + 1)...].reduce(1, *)
    }
}

/// Batch normalization as one autodiff node.
///
/// Normalizes `input` per feature on `featureAxis`, then applies γ (`gamma`)
/// and β (`beta`) when given: y = γ·(x − μ)·invstd + β, invstd = 1/√(σ² + ε).
/// With `statistics == nil` it uses the batch's own mean and biased variance
/// (training) and returns them; otherwise it uses the given mean and variance
/// (running estimates: inference) and the pullback treats them as constants.
/// Only μ and invstd are kept for the pullback, besides the input.
///
/// Shapes: `input` any rank ≥ 2; `gamma`, `beta`, and given statistics hold one
/// value per feature.
public func batchNorm(
    _ input: Tensor, featureAxis: Int = 1, gamma: Tensor?, beta: Tensor?, epsilon: Float,
    using given: (mean: [Float], variance: [Float])? = nil
) -> (output: Tensor, statistics: BatchNormStatistics) {
    let layout = FeatureLayout(shape: input.shape, featureAxis: featureAxis)
    let channels = layout.channels
    for (name, parameter) in [("gamma", gamma), ("beta", beta)] {
        if let parameter {
            precondition(parameter.shape == [channels],
                         "batchNorm: \(name) has shape \(parameter.shape), input \(input.shape) has \(channels) features")
        }
    }
    var mean: [Float], variance: [Float]
    let exactMean: [Double]   // μ before rounding to Float
    if let given {
        precondition(given.mean.count == channels && given.variance.count == channels,
                     "batchNorm: statistics for \(given.mean.count) features, input \(input.shape) has \(channels)")
        (mean, variance) = (given.mean, given.variance)
        exactMean = given.mean.map { Double($0) }
    } else {
        var meanDouble = [Double](repeating: 0, count: channels)
        var varianceDouble = [Double](repeating: 0, count: channels)
        input.withUnsafeBufferPointer { x in
            meanDouble.withUnsafeMutableBufferPointer { mu in
                varianceDouble.withUnsafeMutableBufferPointer { v in
                    batchNormStatistics(x, outer: layout.outer, channels: channels, inner: layout.inner, mean: mu, variance: v)
                }
            }
        }
        mean = meanDouble.map { Float($0) }
        variance = varianceDouble.map { Float($0) }
        exactMean = meanDouble
    }
    let invstd = variance.map { 1 / (Double($0) + Double(epsilon)).squareRoot() }.map { Float($0) }
    let gammaValues = gamma?.scalars, betaValues = beta?.scalars
    var scale = [Float](repeating: 0, count: channels), shift = [Float](repeating: 0, count: channels)
    // y = (x − μ_f)·a + (β − (μ − μ_f)·a) with μ_f the Float mean: centring on
    // μ_f first keeps x − μ exact when |μ| ≫ σ (see `batchNormApply`).
    for c in 0..<channels {
        let a = Double(gammaValues?[c] ?? 1) * Double(invstd[c])
        scale[c] = Float(a)
        shift[c] = Float(Double(betaValues?[c] ?? 0) - (exactMean[c] - Double(mean[c])) * a)
    }
    var output = Tensor(shape: input.shape) { y in
        input.withUnsafeBufferPointer { x in
            scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { b in
                    mean.withUnsafeBufferPointer { mu in
                        batchNormApply(x, outer: layout.outer, channels: channels, inner: layout.inner,
                                       scale: s, shift: b, center: mu, output: y)
                    }
                }
            }
        }
    }
    let statistics = BatchNormStatistics(mean: mean, variance: variance, inverseStandardDeviation: invstd,
                                         count: layout.outer * layout.inner)
    var inputs = [input]
    if let gamma { inputs.append(gamma) }
    if let beta { inputs.append(beta) }
    let x = input.detached()
    let fromBatch = given == nil
    let wantsInputGradient = input.requiresGradient
    let hasGamma = gamma != nil, hasBeta = beta != nil
    // What rounding μ to Float lost; the pullback needs it when |μ| ≫ σ.
    let meanResidual = (0..<channels).map { Float(exactMean[$0] - Double(mean[$0])) }
    output.record("batchNorm", inputs: inputs) { g in
        var dxValues = [Float](repeating: 0, count: wantsInputGradient ? x.scalarCount : 0)
        var dGamma = [Float](repeating: 0, count: channels), dBeta = [Float](repeating: 0, count: channels)
        let gammaArray = gammaValues ?? []
        x.withUnsafeBufferPointer { px in
            g.withUnsafeBufferPointer { pg in
                mean.withUnsafeBufferPointer { mu in
                    invstd.withUnsafeBufferPointer { s in
                        gammaArray.withUnsafeBufferPointer { gp in
                            dxValues.withUnsafeMutableBufferPointer { dx in
                                dGamma.withUnsafeMutableBufferPointer { dg in
                                    dBeta.withUnsafeMutableBufferPointer { db in
                                        meanResidual.withUnsafeBufferPointer { residual in
                                            batchNormBackward(
                                                input: px, outputGradient: pg, outer: layout.outer, channels: channels,
                                                inner: layout.inner, mean: mu, inverseStandardDeviation: s,
                                                gamma: hasGamma ? gp : nil, statisticsFromBatch: fromBatch,
                                                meanResidual: residual, inputGradient: wantsInputGradient ? dx : nil,
                                                gammaGradient: dg, betaGradient: db)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var gradients: [Tensor?] = [wantsInputGradient ? Tensor(dxValues, shape: x.shape) : nil]
        if hasGamma { gradients.append(Tensor(dGamma)) }
        if hasBeta { gradients.append(Tensor(dBeta)) }
        return gradients
    }
    return (output, statistics)
}
