/// Group normalization as one autodiff node: the shared engine of LayerNorm,
/// GroupNorm and InstanceNorm.
///
/// Viewing `input` as `layout` (batch, groups, channelsPerGroup, inner), it
/// normalizes every (batch, group) row by its own mean and biased variance,
/// then applies γ (`gamma`) and β (`beta`) per channel when given:
/// y = γ[c]·(x − μ[row])·invstd[row] + β[c], invstd = 1/√(σ² + ε).
/// With `given` statistics (one mean and variance per row: InstanceNorm's
/// running estimates) it uses those and the pullback treats them as constants.
/// Statistics are two-pass in Double (see `groupNormStatistics`); the pullback
/// keeps only the input, μ and invstd per row.
///
/// Shapes: `input` holds `layout.count` values in any shape; `gamma` and `beta`
/// hold `layout.channels` values each (any shape: LayerNorm's are shaped like
/// its normalized dims), and their gradients come back in their shapes.
public func groupNorm(
    _ input: Tensor, layout: GroupNormLayout, gamma: Tensor?, beta: Tensor?, epsilon: Float,
    using given: (mean: [Float], variance: [Float])? = nil
) -> (output: Tensor, statistics: GroupNormStatistics) {
    precondition(input.scalarCount == layout.count,
                 "groupNorm: input \(input.shape) does not fit the view \(layout)")
    for (name, parameter) in [("gamma", gamma), ("beta", beta)] {
        if let parameter {
            precondition(parameter.scalarCount == layout.channels,
                         "groupNorm: \(name) has shape \(parameter.shape), input \(input.shape) viewed as \(layout) "
                         + "needs \(layout.channels) values")
        }
    }
    let rows = layout.rows
    var mean: [Float], variance: [Float], meanResidual: [Float]
    if let given {
        precondition(given.mean.count == rows && given.variance.count == rows,
                     "groupNorm: statistics for \(given.mean.count) rows, input \(input.shape) viewed as \(layout) has \(rows)")
        (mean, variance) = (given.mean, given.variance)
        meanResidual = [Float](repeating: 0, count: rows)
    } else {
        var meanDouble = [Double](repeating: 0, count: rows), varianceDouble = meanDouble
        input.withUnsafeBufferPointer { x in
            meanDouble.withUnsafeMutableBufferPointer { mu in
                varianceDouble.withUnsafeMutableBufferPointer { v in
                    groupNormStatistics(x, layout: layout, mean: mu, variance: v)
                }
            }
        }
        mean = meanDouble.map { Float($0) }
        variance = varianceDouble.map { Float($0) }
        // What rounding μ to Float lost; forward and pullback need it when |μ| ≫ σ.
        meanResidual = (0..<rows).map { Float(meanDouble[$0] - Double(mean[$0])) }
    }
    let invstd = variance.map { Float(1 / (Double($0) + Double(epsilon)).squareRoot()) }
    let gammaValues = gamma?.scalars, betaValues = beta?.scalars
    var output = Tensor(shape: input.shape) { y in
        input.withUnsafeBufferPointer { x in
            withOptionalBuffers(gammaValues, betaValues) { gammaBuffer, betaBuffer in
                mean.withUnsafeBufferPointer { mu in
                    invstd.withUnsafeBufferPointer { s in
                        meanResidual.withUnsafeBufferPointer { residual in
                            groupNormApply(x, layout: layout, mean: mu, inverseStandardDeviation: s,
                                           meanResidual: residual, gamma: gammaBuffer, beta: betaBuffer, output: y)
                        }
                    }
                }
            }
        }
    }
    let statistics = GroupNormStatistics(mean: mean, variance: variance, inverseStandardDeviation: invstd,
                                         count: layout.rowLength)
    var inputs = [input]
    if let gamma { inputs.append(gamma) }
    if let beta { inputs.append(beta) }
    let x = input.detached()
    let fromInput = given == nil
    let wantsInputGradient = input.requiresGradient
    let gammaShape = gamma?.shape, betaShape = beta?.shape
    output.record("groupNorm", inputs: inputs) { upstream in
        // Uninitialized: groupNormBackward writes every element of dx (a zeroed array
        // copied into a tensor would cost a fill and a copy of the input's size).
        var dx = Tensor(shape: wantsInputGradient ? x.shape : [0]) { _ in }
        var dGamma = [Float](repeating: 0, count: layout.channels), dBeta = dGamma
        x.withUnsafeBufferPointer { px in
            upstream.withUnsafeBufferPointer { pdy in
                withOptionalBuffers(gammaValues, nil) { gammaBuffer, _ in
                    mean.withUnsafeBufferPointer { mu in
                        invstd.withUnsafeBufferPointer { s in
                            meanResidual.withUnsafeBufferPointer { residual in
                                dx.withUnsafeMutableBufferPointer { dx in
                                    dGamma.withUnsafeMutableBufferPointer { dg in
                                        dBeta.withUnsafeMutableBufferPointer { db in
                                            groupNormBackward(
                                                input: px, outputGradient: pdy, layout: layout, mean: mu,
                                                inverseStandardDeviation: s, meanResidual: residual,
                                                gamma: gammaBuffer, statisticsFromInput: fromInput,
                                                inputGradient: wantsInputGradient ? dx : nil,
                                                gammaGradient: gammaShape == nil ? nil : dg,
                                                betaGradient: betaShape == nil ? nil : db)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var gradients: [Tensor?] = [wantsInputGradient ? dx : nil]
        if let gammaShape { gradients.append(Tensor(dGamma, shape: gammaShape)) }
        if let betaShape { gradients.append(Tensor(dBeta, shape: betaShape)) }
        return gradients
    }
    return (output, statistics)
}

/// Layer normalization (Ba, Kiros & Hinton 2016, https://arxiv.org/abs/1607.06450),
/// PyTorch's `F.layer_norm`: each sample is normalized over its trailing
/// `normalizedShape` dims; `gamma` and `beta`, when given, are shaped like
/// `normalizedShape` and apply elementwise. One autodiff node.
public func layerNorm(
    _ input: Tensor, normalizedShape: [Int], gamma: Tensor? = nil, beta: Tensor? = nil, epsilon: Float = 1e-5
) -> Tensor {
    for (name, parameter) in [("gamma", gamma), ("beta", beta)] {
        if let parameter {
            precondition(parameter.shape == normalizedShape,
                         "layerNorm: \(name) has shape \(parameter.shape), expected normalizedShape \(normalizedShape)")
        }
    }
    let layout = GroupNormLayout.layerNorm(shape: input.shape, normalizedShape: normalizedShape)
    return groupNorm(input, layout: layout, gamma: gamma, beta: beta, epsilon: epsilon).output
}

/// Group normalization (Wu & He 2018, https://arxiv.org/abs/1803.08494),
/// PyTorch's `F.group_norm`: input (N, C, S…) is split into `groupCount`
/// groups of C/groupCount consecutive channels, each (sample, group) is
/// normalized over its channels and positions, and `gamma`, `beta` ((C)) apply
/// per channel. One autodiff node.
public func groupNorm(
    _ input: Tensor, groupCount: Int, gamma: Tensor? = nil, beta: Tensor? = nil, epsilon: Float = 1e-5
) -> Tensor {
    let layout = GroupNormLayout.groupNorm(shape: input.shape, groupCount: groupCount)
    checkPerChannel(gamma, beta, channels: input.shape[1], input: input.shape, op: "groupNorm")
    return groupNorm(input, layout: layout, gamma: gamma, beta: beta, epsilon: epsilon).output
}

/// Instance normalization (Ulyanov, Vedaldi & Lempitsky 2016,
/// https://arxiv.org/abs/1607.08022), PyTorch's `F.instance_norm` with the
/// input's own statistics: every (n, c) of (N, C, S…) is normalized over its
/// positions S…, and `gamma`, `beta` ((C)) apply per channel. One autodiff node.
public func instanceNorm(
    _ input: Tensor, gamma: Tensor? = nil, beta: Tensor? = nil, epsilon: Float = 1e-5
) -> Tensor {
    let layout = GroupNormLayout.instanceNorm(shape: input.shape)
    checkPerChannel(gamma, beta, channels: input.shape[1], input: input.shape, op: "instanceNorm")
    return groupNorm(input, layout: layout, gamma: gamma, beta: beta, epsilon: epsilon).output
}

private func checkPerChannel(_ gamma: Tensor?, _ beta: Tensor?, channels: Int, input: [Int], op: String) {
    for (name, parameter) in [("gamma", gamma), ("beta", beta)] {
        if let parameter {
            precondition(parameter.shape == [channels],
                         "\(op): \(name) has shape \(parameter.shape), input \(input) has \(channels) channels")
        }
    }
}

/// Runs `body` with buffers over the arrays, nil where an array is nil.
private func withOptionalBuffers<R>(
    _ first: [Float]?, _ second: [Float]?,
    _ body: (UnsafeBufferPointer<Float>?, UnsafeBufferPointer<Float>?) -> R
) -> R {
    func with(_ values: [Float]?, _ inner: (UnsafeBufferPointer<Float>?) -> R) -> R {
        guard let values else { return inner(nil) }
        return values.withUnsafeBufferPointer { inner($0) }
    }
    return with(first) { a in with(second) { b in body(a, b) } }
}
