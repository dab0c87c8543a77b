// LayerNorm, GroupNorm and InstanceNorm layers against a Double reference:
// parameters and their names, forward in both modes, gradients into the
// parameters by finite differences, instance norm's running statistics, the
// Keras spelling, and the inputs they reject.

import NormKitCore
@testable import NormKitNN
import Testing

/// Normalization in Double, written from the definition: the values of x whose
/// flat index maps to the same `group` share μ and the biased σ² (or the
/// `given` per-group constants); y = γ[k]·(x − μ)/√(σ² + ε) + β[k], k = `parameter`(flat index).
private func referenceNormalize(
    _ x: [Double], group: (Int) -> Int, parameter: (Int) -> Int, gamma: [Double]?, beta: [Double]?,
    epsilon: Double, given: (mean: [Double], variance: [Double])? = nil
) -> (output: [Double], mean: [Double], variance: [Double]) {
    let groups = x.indices.map(group)
    let groupCount = (groups.max() ?? -1) + 1
    var count = [Double](repeating: 0, count: groupCount), mean = count, variance = count
    for (value, g) in zip(x, groups) { count[g] += 1; mean[g] += value }
    for g in 0..<groupCount { mean[g] /= count[g] }
    for (value, g) in zip(x, groups) { variance[g] += (value - mean[g]) * (value - mean[g]) / count[g] }
    let (useMean, useVariance) = given ?? (mean, variance)
    let output = x.indices.map { i -> Double in
        let g = groups[i], k = parameter(i)
        return (gamma?[k] ?? 1) * (x[i] - useMean[g]) / (useVariance[g] + epsilon).squareRoot() + (beta?[k] ?? 0)
    }
    return (output, mean, variance)
}

/// (N, C, S…) index arithmetic for the references: sample and channel of a flat index.
private struct ChannelsFirst {
    let shape: [Int]
    var channels: Int { shape[1] }
    var spatial: Int { shape.dropFirst(2).reduce(1, *) }
    func sample(_ flat: Int) -> Int { flat / (channels * spatial) }
    func channel(_ flat: Int) -> Int { (flat / spatial) % channels }
}

/// Checks the gradients that reach the layer's input, weight and bias against
/// central differences of `reference`, for the loss Σ w·y with fixed random w.
private func expectLayerGradientsMatchFiniteDifferences(
    _ layer: Module, weight: Parameter, bias: Parameter, x: [Double], shape: [Int],
    reference: (_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double],
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let gamma = doubles(weight.value), beta = doubles(bias.value)
    let w = randomDoubles(x.count, seed: 990)
    let input = leaf(x, shape: shape)
    weight.clearGradient()
    bias.clearGradient()
    try layer(input.tensor).backward(gradient: tensor(w, shape: shape))
    expectClose(input.node.gradient, centralDifferences(at: x) { weightedSum(reference($0, gamma, beta), w) },
                relative: 1e-4, absolute: 1e-5, "dx", sourceLocation: sourceLocation)
    expectClose(weight.gradient, centralDifferences(at: gamma) { weightedSum(reference(x, $0, beta), w) },
                relative: 1e-4, absolute: 1e-5, "dweight", sourceLocation: sourceLocation)
    expectClose(bias.gradient, centralDifferences(at: beta) { weightedSum(reference(x, gamma, $0), w) },
                relative: 1e-4, absolute: 1e-5, "dbias", sourceLocation: sourceLocation)
}

@Suite("LayerNorm")
struct LayerNormTests {
    @Test("weight and bias are named as in PyTorch, shaped like normalizedShape, initially 1 and 0")
    func parameters() {
        let layer = LayerNorm(normalizedShape: [3, 4])
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(layer.weight?.value.shape == [3, 4] && layer.bias?.value.shape == [3, 4])
        #expect(layer.weight?.value.scalars.allSatisfy { $0 == 1 } == true)
        #expect(layer.bias?.value.scalars.allSatisfy { $0 == 0 } == true)
        #expect(layer.epsilon == 1e-5)
        #expect(LayerNorm(8, bias: false).namedParameters().map(\.0) == ["weight"])
        #expect(LayerNorm(8, elementwiseAffine: false).namedParameters().isEmpty)
        #expect(LayerNorm(8, elementwiseAffine: false, bias: true).bias == nil, "bias needs elementwiseAffine")
    }

    @Test("normalizes every leading index over the trailing dims, the same in both modes",
          arguments: [([2, 3, 4], [3, 4]), ([2, 3, 4], [4]), ([1, 5], [5]), ([6], [6])])
    func forwardMatchesReference(shape: [Int], normalizedShape: [Int]) throws {
        let layer = LayerNorm(normalizedShape: normalizedShape)
        let span = normalizedShape.reduce(1, *)
        let gamma = randomDoubles(span, in: -2...2, seed: 900), beta = randomDoubles(span, seed: 901)
        layer.weight!.value = tensor(gamma, shape: normalizedShape)
        layer.bias!.value = tensor(beta, shape: normalizedShape)
        let x = randomDoubles(shape.reduce(1, *), in: -3...3, seed: 902)
        let expected = referenceNormalize(x, group: { $0 / span }, parameter: { $0 % span }, gamma: gamma, beta: beta,
                                          epsilon: 1e-5).output
        let training = try layer(tensor(x, shape: shape))
        layer.eval()
        let inference = try layer(tensor(x, shape: shape))
        #expect(training.shape == shape)
        expectClose(training.scalars, expected, relative: 1e-5, absolute: 1e-6, "training")
        #expect(inference.scalars == training.scalars, "LayerNorm has no mode-dependent state")
    }

    @Test func gradientsReachInputWeightAndBias() throws {
        let layer = LayerNorm(normalizedShape: [2, 3])
        layer.weight!.value = tensor(randomDoubles(6, in: -2...2, seed: 903), shape: [2, 3])
        layer.bias!.value = tensor(randomDoubles(6, seed: 904), shape: [2, 3])
        try expectLayerGradientsMatchFiniteDifferences(
            layer, weight: layer.weight!, bias: layer.bias!, x: randomDoubles(12, in: -2...2, seed: 905), shape: [2, 2, 3]
        ) { x, gamma, beta in
            referenceNormalize(x, group: { $0 / 6 }, parameter: { $0 % 6 }, gamma: gamma, beta: beta,
                               epsilon: 1e-5).output
        }
    }

    @Test("Keras' LayerNormalization: last axis, epsilon 1e-3, parameters from the first input")
    func kerasSpelling() throws {
        let layer = LayerNormalization()
        #expect(layer.epsilon == 1e-3 && layer.normalizedShape == nil && layer.weight == nil)
        let x = randomDoubles(15, in: -2...2, seed: 906)
        let y = try layer(tensor(x, shape: [3, 5]))
        #expect(layer.normalizedShape == [5] && layer.weight?.value.shape == [5] && layer.bias?.value.shape == [5])
        let expected = referenceNormalize(x, group: { $0 / 5 }, parameter: { $0 % 5 }, gamma: nil, beta: nil,
                                          epsilon: Double(Float(1e-3))).output
        expectClose(y.scalars, expected, relative: 1e-5, absolute: 1e-6)
        #expect(LayerNormalization(center: false).namedParameters().isEmpty, "no parameters before the first input")
        let scaleOnly = LayerNormalization(center: false)
        _ = scaleOnly.build(inputShape: [2, 7])
        #expect(scaleOnly.namedParameters().map(\.0) == ["weight"])
        let centerOnly = LayerNormalization(scale: false)
        _ = centerOnly.build(inputShape: [2, 7])
        #expect(centerOnly.namedParameters().map(\.0) == ["bias"])
    }

    @Test func worksInASequentialBuiltFromTheInputShape() throws {
        let model = Sequential(inputShape: [4]) {
            Linear(4, 6, generator: SeededGenerator(seed: 907))
            LayerNormalization()
            ReLU()
        }
        #expect(model.namedParameters().map(\.0).contains("1.weight"))
        let y = try model(tensor(randomDoubles(8, seed: 908), shape: [2, 4]))
        #expect(y.shape == [2, 6])
    }
}

@Suite("GroupNorm")
struct GroupNormTests {
    @Test func parametersArePerChannel() {
        let layer = GroupNorm(groupCount: 2, channelCount: 6)
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(layer.weight?.value.shape == [6] && layer.bias?.value.shape == [6])
        #expect(GroupNorm(groupCount: 2, channelCount: 6, affine: false).namedParameters().isEmpty)
    }

    @Test("each (sample, group) is normalized over its channels and positions, the same in both modes",
          arguments: [([2, 6, 3], 3), ([3, 4], 2), ([1, 4, 2, 2], 1), ([2, 4, 5], 4)])
    func forwardMatchesReference(shape: [Int], groups: Int) throws {
        let layout = ChannelsFirst(shape: shape)
        let layer = GroupNorm(groupCount: groups, channelCount: layout.channels)
        let gamma = randomDoubles(layout.channels, in: -2...2, seed: 910)
        let beta = randomDoubles(layout.channels, seed: 911)
        layer.weight!.value = tensor(gamma)
        layer.bias!.value = tensor(beta)
        let x = randomDoubles(shape.reduce(1, *), in: -3...3, seed: 912)
        let perGroup = layout.channels / groups
        let expected = referenceNormalize(
            x, group: { layout.sample($0) * groups + layout.channel($0) / perGroup }, parameter: layout.channel,
            gamma: gamma, beta: beta, epsilon: 1e-5).output
        let training = try layer(tensor(x, shape: shape))
        layer.eval()
        let inference = try layer(tensor(x, shape: shape))
        expectClose(training.scalars, expected, relative: 1e-5, absolute: 1e-6, "training")
        #expect(inference.scalars == training.scalars, "GroupNorm has no mode-dependent state")
    }

    @Test func gradientsReachInputWeightAndBias() throws {
        let layout = ChannelsFirst(shape: [2, 4, 3])
        let layer = GroupNorm(groupCount: 2, channelCount: 4)
        layer.weight!.value = tensor(randomDoubles(4, in: -2...2, seed: 913))
        layer.bias!.value = tensor(randomDoubles(4, seed: 914))
        try expectLayerGradientsMatchFiniteDifferences(
            layer, weight: layer.weight!, bias: layer.bias!, x: randomDoubles(24, in: -2...2, seed: 915),
            shape: layout.shape
        ) { x, gamma, beta in
            referenceNormalize(x, group: { layout.sample($0) * 2 + layout.channel($0) / 2 }, parameter: layout.channel,
                               gamma: gamma, beta: beta, epsilon: 1e-5).output
        }
    }

    @Test("a batch of one sample is fine: statistics never cross the batch")
    func batchOfOne() throws {
        let layer = GroupNorm(groupCount: 2, channelCount: 4)
        let x = randomDoubles(4 * 5, in: -3...3, seed: 916)
        let alone = try layer(tensor(x, shape: [1, 4, 5]))
        let inBatch = try layer(tensor(x + randomDoubles(20, in: -9...9, seed: 917), shape: [2, 4, 5]))
        #expect(Array(inBatch.scalars[0..<20]) == alone.scalars, "a sample's output does not depend on the others")
    }

    @Test("as in PyTorch, a group of one value is not an error: the output is β")
    func singleValueGroupsOutputBeta() throws {
        let layer = GroupNorm(groupCount: 4, channelCount: 4)
        layer.bias!.value = Tensor([0.5, -1, 2, 0])
        let y = try layer(tensor(randomDoubles(8, seed: 918), shape: [2, 4]))
        #expect(y.scalars == [0.5, -1, 2, 0, 0.5, -1, 2, 0])
    }
}

@Suite("InstanceNorm")
struct InstanceNormTests {
    private func instanceReference(_ x: [Double], shape: [Int], gamma: [Double]? = nil, beta: [Double]? = nil,
                                   given: (mean: [Double], variance: [Double])? = nil)
        -> (output: [Double], mean: [Double], variance: [Double]) {
        let layout = ChannelsFirst(shape: shape)
        // Given statistics are per channel; the reference groups by (n, c), so repeat them per sample.
        let perInstance = given.map { g in
            (mean: (0..<shape[0]).flatMap { _ in g.mean }, variance: (0..<shape[0]).flatMap { _ in g.variance })
        }
        return referenceNormalize(x, group: { layout.sample($0) * layout.channels + layout.channel($0) },
                                  parameter: layout.channel, gamma: gamma, beta: beta, epsilon: 1e-5,
                                  given: perInstance)
    }

    @Test("PyTorch defaults: no affine, no running statistics, instance statistics in both modes",
          arguments: [[2, 3, 5], [2, 3, 2, 3], [1, 2, 2, 2, 3]])
    func defaults(shape: [Int]) throws {
        let layer: InstanceNorm = switch shape.count {
        case 3: InstanceNorm1d(shape[1])
        case 4: InstanceNorm2d(shape[1])
        default: InstanceNorm3d(shape[1])
        }
        #expect(layer.namedParameters().isEmpty && layer.runningMean == nil && layer.runningVariance == nil)
        #expect(layer.epsilon == 1e-5 && !layer.isAffine && !layer.tracksRunningStatistics)
        let x = randomDoubles(shape.reduce(1, *), in: -3...3, seed: 920)
        let expected = instanceReference(x, shape: shape).output
        let training = try layer(tensor(x, shape: shape))
        layer.eval()
        let inference = try layer(tensor(x, shape: shape))
        expectClose(training.scalars, expected, relative: 1e-5, absolute: 1e-6, "training")
        #expect(inference.scalars == training.scalars)
    }

    @Test func affineGradientsReachInputWeightAndBias() throws {
        let shape = [2, 3, 4]
        let layer = InstanceNorm1d(3, affine: true)
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"] && layer.weight?.value.shape == [3])
        layer.weight!.value = tensor(randomDoubles(3, in: -2...2, seed: 921))
        layer.bias!.value = tensor(randomDoubles(3, seed: 922))
        try expectLayerGradientsMatchFiniteDifferences(
            layer, weight: layer.weight!, bias: layer.bias!, x: randomDoubles(24, in: -2...2, seed: 923), shape: shape
        ) { x, gamma, beta in
            instanceReference(x, shape: shape, gamma: gamma, beta: beta).output
        }
    }

    /// With tracking, training moves the running estimates toward the batch averages of the
    /// instance statistics (unbiased variance), and inference normalizes with them.
    @Test("with tracking: training updates the running estimates as PyTorch does, inference uses them")
    func runningStatistics() throws {
        let shape = [3, 2, 5]
        let layer = InstanceNorm1d(2, tracksRunningStatistics: true)
        #expect(layer.runningMean?.scalars == [0, 0] && layer.runningVariance?.scalars == [1, 1])
        var expectedMean = [0.0, 0.0], expectedVariance = [1.0, 1.0]
        for step in 0..<2 {
            let x = randomDoubles(30, in: -3...3, seed: 924 + UInt64(step)).map { $0 + 1 }
            let y = try layer(tensor(x, shape: shape))
            let reference = instanceReference(x, shape: shape)
            expectClose(y.scalars, reference.output, relative: 1e-5, absolute: 1e-6, "training uses instance statistics")
            for c in 0..<2 {
                let means = (0..<3).map { reference.mean[$0 * 2 + c] }
                let variances = (0..<3).map { reference.variance[$0 * 2 + c] * 5 / 4 }
                expectedMean[c] = 0.9 * expectedMean[c] + 0.1 * means.reduce(0, +) / 3
                expectedVariance[c] = 0.9 * expectedVariance[c] + 0.1 * variances.reduce(0, +) / 3
            }
            expectClose(layer.runningMean!.scalars, expectedMean, relative: 1e-6, absolute: 1e-7, "running mean")
            expectClose(layer.runningVariance!.scalars, expectedVariance, relative: 1e-6, absolute: 0, "running variance")
            #expect(layer.numBatchesTracked == step + 1)
        }

        layer.eval()
        let running = (mean: doubles(layer.runningMean!), variance: doubles(layer.runningVariance!))
        let x = randomDoubles(30, in: -3...3, seed: 926)
        let y = try layer(tensor(x, shape: shape))
        expectClose(y.scalars, instanceReference(x, shape: shape, given: running).output, relative: 1e-5,
                    absolute: 1e-6, "inference uses the running estimates")
        #expect(doubles(layer.runningMean!) == running.mean && layer.numBatchesTracked == 2, "inference updates nothing")
    }

    @Test func cumulativeAverageIsThePlainMeanOfTheBatches() throws {
        let shape = [2, 2, 4]
        let layer = InstanceNorm1d(2, runningAverage: .cumulativeAverage, tracksRunningStatistics: true)
        var batchMeans: [[Double]] = []
        for step in 0..<3 {
            let x = randomDoubles(16, in: -3...3, seed: 927 + UInt64(step)).map { $0 + Double(step) }
            _ = try layer(tensor(x, shape: shape))
            let reference = instanceReference(x, shape: shape)
            batchMeans.append((0..<2).map { c in (reference.mean[c] + reference.mean[2 + c]) / 2 })
        }
        let expected = (0..<2).map { c in batchMeans.map { $0[c] }.reduce(0, +) / 3 }
        expectClose(layer.runningMean!.scalars, expected, relative: 1e-6, absolute: 1e-7)
        #expect(layer.numBatchesTracked == 3)
    }

    @Test("input without the batch axis, (C, L…), is one sample as in PyTorch", arguments: [1, 2])
    func unbatchedInput(spatialRank: Int) throws {
        let layer: InstanceNorm = spatialRank == 1 ? InstanceNorm1d(3, affine: true) : InstanceNorm2d(3, affine: true)
        layer.bias!.value = Tensor([0.5, -0.5, 1])
        let shape = spatialRank == 1 ? [3, 6] : [3, 2, 3]
        let x = tensor(randomDoubles(18, in: -3...3, seed: 930), shape: shape)
        let unbatched = try layer(x)
        let batched = try layer(x.reshaped([1] + shape))
        #expect(unbatched.shape == shape)
        #expect(unbatched.scalars == batched.scalars)
    }

    @Test("one spatial element with instance statistics throws, naming the layer and shape; running ones work")
    func singleSpatialElementThrows() throws {
        let untracked = InstanceNorm1d(3)
        let x = tensor(randomDoubles(6, seed: 931), shape: [2, 3, 1])
        let error = try #require(throws: InstanceNormError.self) { try untracked(x) }
        #expect(error == .singleSpatialElement(layer: untracked.description, shape: [2, 3, 1]))
        #expect(error.description.contains("[2, 3, 1]") && error.description.contains("InstanceNorm1d(3"))
        untracked.eval()
        #expect(throws: InstanceNormError.self, "without running statistics inference uses instance statistics too") {
            try untracked(x)
        }
        let tracked = InstanceNorm1d(3, tracksRunningStatistics: true)
        #expect(throws: InstanceNormError.self) { try tracked(x) }
        #expect(tracked.numBatchesTracked == 0)
        tracked.eval()
        #expect(try tracked(x).shape == [2, 3, 1], "inference with running statistics needs no spatial extent")
    }

    @Test func nonFiniteBatchLeavesTheRunningStatisticsUntouched() throws {
        let layer = InstanceNorm1d(2, tracksRunningStatistics: true)
        _ = try layer(tensor(randomDoubles(12, seed: 932), shape: [2, 2, 3]))
        let before = (layer.runningMean!.scalars, layer.runningVariance!.scalars)
        var values = randomDoubles(12, seed: 933)
        values[4] = .infinity
        _ = try layer(tensor(values, shape: [2, 2, 3]))
        #expect(layer.runningMean!.scalars == before.0 && layer.runningVariance!.scalars == before.1)
        #expect(layer.nonFiniteBatchCount == 1 && layer.numBatchesTracked == 1)
    }
}
