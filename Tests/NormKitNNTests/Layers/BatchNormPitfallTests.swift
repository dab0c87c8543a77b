// Where batch normalization hurts users: one value per channel, non-finite
// batches, and channels whose statistics stress Float arithmetic.

import NormKitCore
@testable import NormKitNN
import Testing

/// An input with exactly one value per feature, for one layer.
struct SingleValueCase: Sendable, CustomTestStringConvertible {
    let layout: BatchNormLayout
    var testDescription: String { layout.testDescription }

    static let all: [SingleValueCase] = [
        SingleValueCase(layout: BatchNormLayout(kind: .batchNorm1d, shape: [1, 4], featureAxis: 1)),
        SingleValueCase(layout: BatchNormLayout(kind: .batchNorm1d, shape: [1, 4, 1], featureAxis: 1)),
        SingleValueCase(layout: BatchNormLayout(kind: .general, shape: [1, 4, 1], featureAxis: 1)),
        SingleValueCase(layout: BatchNormLayout(kind: .general, shape: [1, 1, 4], featureAxis: -1)),
    ]
}

@Suite("Batch-norm pitfalls")
struct BatchNormPitfallTests {
    @Test("one value per channel in training throws singleValuePerChannel naming the shape and the remedies",
          arguments: SingleValueCase.all)
    func singleValuePerChannelThrowsInTraining(testCase: SingleValueCase) throws {
        let layout = testCase.layout
        let layer = layout.makeLayer()
        let x = tensor(layout.batch(seed: 400), shape: layout.shape)

        let error = try #require(throws: BatchNormError.self) { try layer(x) }

        #expect(error == .singleValuePerChannel(layer: layer.description, shape: layout.shape))
        let message = error.description
        #expect(message.contains("\(layout.shape)"), "names the shape: \(message)")
        #expect(message.contains(layer.description), "names the layer: \(message)")
        #expect(message.contains("dropsLastPartialBatch"), "suggests dropping the last batch: \(message)")
        #expect(message.contains("inference mode"), "suggests inference mode: \(message)")
        #expect(layer.numBatchesTracked == 0, "a rejected batch is not tracked")
    }

    @Test("the same single-value input works in inference mode, normalized with the running estimates",
          arguments: SingleValueCase.all)
    func singleValuePerChannelWorksInInference(testCase: SingleValueCase) throws {
        let layout = testCase.layout
        let layer = layout.makeLayer()
        layer.eval()
        let x = layout.batch(seed: 401)

        let y = try layer(tensor(x, shape: layout.shape))

        // Initial running estimates: mean 0, variance 1; γ = 1, β = 0.
        let expected = ReferenceBatchNorm.forward(
            x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: nil, beta: nil, epsilon: 1e-5,
            statistics: ([Double](repeating: 0, count: layout.features), [Double](repeating: 1, count: layout.features)))
        expectClose(y.scalars, expected.output, relative: 1e-6, "output")
    }

    @Test("one value per channel in inference, for a layer that normalizes with the batch there too, does not suggest inference mode",
          arguments: [false, true])
    func singleValuePerChannelWithBatchStatisticsInInference(untracked: Bool) throws {
        let layer = BatchNorm1d(3, tracksRunningStatistics: !untracked)
        if !untracked { layer.statistics = .batch }
        layer.eval()

        let error = try #require(throws: BatchNormError.self) { try layer(Tensor([1, 2, 3], shape: [1, 3])) }

        #expect(error == .singleValuePerChannelWithBatchStatisticsInInference(layer: layer.description, shape: [1, 3]))
        let message = error.description
        #expect(message.contains("[1, 3]") && message.contains(layer.description), "names the layer and shape: \(message)")
        #expect(message.contains("in inference mode") && !message.contains("evaluate in inference"),
                "says the layer is in inference already instead of suggesting it: \(message)")
    }

    @Test("an empty training batch gives an empty output, as in PyTorch, and leaves the running estimates and the count alone",
          arguments: [[0, 3], [2, 3, 0], [0, 3, 4, 4]])
    func emptyBatchPassesThrough(shape: [Int]) throws {
        let layers = [BatchNorm(featureCount: 3), BatchNorm(featureCount: 3, runningAverage: .cumulativeAverage),
                      BatchNorm(featureCount: 3, ghostBatchSize: 2),
                      BatchNorm(featureCount: 3, renormalization: .constant(rMax: 2, dMax: 1)),
                      BatchNorm(featureCount: 3, tracksRunningStatistics: false)]
        for layer in layers {
            let y = try layer(Tensor(shape: shape) { _ in })
            #expect(y.shape == shape, "\(layer)")
            #expect(layer.numBatchesTracked == 0 && layer.nonFiniteBatchCount == 0, "\(layer)")
            if layer.tracksRunningStatistics {
                #expect(layer.runningMean?.scalars == [0, 0, 0] && layer.runningVariance?.scalars == [1, 1, 1], "\(layer)")
            }
            y.sum().backward()
            #expect(layer.weight?.gradient?.scalars == [0, 0, 0], "γ gets a zero gradient: \(layer)")
        }
    }

    @Test("a training batch containing NaN or ∞ leaves the running estimates untouched and is counted",
          arguments: [Float.nan, Float.infinity])
    func nonFiniteBatchIsNotFolded(poison: Float) throws {
        let layout = BatchNormLayout.all[1]
        let layer = layout.makeLayer()
        _ = try layer(tensor(layout.batch(seed: 410), shape: layout.shape))
        let runningMean = try #require(layer.runningMean).scalars
        let runningVariance = try #require(layer.runningVariance).scalars

        var poisoned = tensor(layout.batch(seed: 411), shape: layout.shape)
        poisoned[1, 2, 3] = poison
        _ = try layer(poisoned)

        #expect(layer.runningMean?.scalars == runningMean)
        #expect(layer.runningVariance?.scalars == runningVariance)
        #expect(layer.nonFiniteBatchCount == 1)
        #expect(layer.numBatchesTracked == 1)

        // A clean batch afterwards is folded in as usual.
        _ = try layer(tensor(layout.batch(seed: 412), shape: layout.shape))
        #expect(layer.numBatchesTracked == 2)
        #expect(layer.nonFiniteBatchCount == 1)
        #expect(layer.runningMean?.scalars.allSatisfy { $0.isFinite } == true)
        #expect(layer.runningMean?.scalars != runningMean)
    }

    @Test("a channel with mean 1e4 and std 1e-3 and a constant channel give finite, correct output and statistics")
    func extremeChannelsStayAccurate() throws {
        let batch = 64
        let shape = [batch, 3]
        let noise = randomDoubles(batch * 3, in: -1.7...1.7, seed: 420)
        var x = [Double](repeating: 0, count: batch * 3)
        for n in 0..<batch {
            x[n * 3 + 0] = Double(Float(1e4 + 1e-3 * noise[n * 3]))   // |mean| ≫ std
            x[n * 3 + 1] = 5                                           // constant
            x[n * 3 + 2] = noise[n * 3 + 2]                            // ordinary
        }
        let layer = BatchNorm1d(3)
        let gamma: [Double] = [2, 3, 0.5]
        let beta: [Double] = [0.5, -1, 0.25]
        layer.weight!.value = tensor(gamma)
        layer.bias!.value = tensor(beta)

        let y = try layer(tensor(x, shape: shape))

        let expected = ReferenceBatchNorm.forward(x, shape: shape, featureAxis: 1, gamma: gamma, beta: beta, epsilon: 1e-5)
        #expect(y.scalars.allSatisfy { $0.isFinite })
        // The reference's own spread in channel 0 is about 0.3·γ; a forward that
        // lost the deviations to cancellation would be off by that much.
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-5, "output")
        for n in 0..<batch { #expect(y[n, 1] == Float(beta[1]), "a constant channel outputs exactly β") }
        let statistics = try #require(layer.lastBatchStatistics)
        expectClose(statistics.variance, expected.variance, relative: 1e-4, absolute: 1e-12, "batch variance")
        #expect(statistics.variance[1] == 0)
        let runningVariance = try #require(layer.runningVariance)
        expectClose(runningVariance, expected.unbiasedVariance.map { 0.9 + 0.1 * $0 }, relative: 1e-6, "running variance")
    }

    @Test("gradients stay accurate for a channel with mean 1e4 and std 1e-3 and for one with mean 1024")
    func extremeChannelGradients() throws {
        let batch = 64
        let shape = [batch, 2]
        let noise = randomDoubles(batch * 2, in: -1.7...1.7, seed: 440)
        // Channel 0: 1e4 + 1e-3·z; channel 1: 1024 + 0.3·z, both rounded to Float.
        let offsets: [Double] = [1e4, 1024], spreads: [Double] = [1e-3, 0.3]
        let x = noise.indices.map { Double(Float(offsets[$0 % 2] + spreads[$0 % 2] * noise[$0])) }
        // Batch norm is shift-invariant, so the reference (and its finite
        // differences) work on the exact deviations x − offset: differencing
        // at x itself would drown a step of h in the rounding of 1e4 + h.
        let deviations = x.indices.map { x[$0] - offsets[$0 % 2] }
        let gamma: [Double] = [2, 0.5], beta: [Double] = [0.5, 0.25]
        func reference(_ d: [Double], _ g: [Double], _ b: [Double]) -> [Double] {
            ReferenceBatchNorm.forward(d, shape: shape, featureAxis: 1, gamma: g, beta: b, epsilon: 1e-5).output
        }
        let layer = BatchNorm1d(2)
        layer.weight!.value = tensor(gamma)
        layer.bias!.value = tensor(beta)
        let w = randomDoubles(batch * 2, seed: 441)
        let input = leaf(x, shape: shape)

        try layer(input.tensor).backward(gradient: tensor(w, shape: shape))

        let dx = centralDifferences(at: deviations, step: 1e-9) { weightedSum(reference($0, gamma, beta), w) }
        let dGamma = centralDifferences(at: gamma) { weightedSum(reference(deviations, $0, beta), w) }
        expectClose(input.node.gradient, dx, relative: 1e-4, absolute: 1e-5, "dL/dx")
        expectClose(layer.weight?.gradient, dGamma, relative: 1e-4, absolute: 1e-5, "dL/dγ")
    }

    @Test("shifting a channel by 1024 leaves its normalized output unchanged")
    func outputIsShiftInvariant() throws {
        let batch = 32
        let noise = randomDoubles(batch, in: -1...1, seed: 430)
        // Multiples of 2⁻¹³ in [−0.5, 0.5]: x + 1024 is exact in Float (its ulp is 2⁻¹³).
        let centred = noise.map { (0.5 * $0 * 8192).rounded() / 8192 }
        let shifted = centred.map { $0 + 1024 }
        let a = BatchNorm1d(1), b = BatchNorm1d(1)

        let ya = try a(tensor(centred, shape: [batch, 1]))
        let yb = try b(tensor(shifted, shape: [batch, 1]))

        expectClose(yb.scalars, doubles(ya), relative: 1e-5, absolute: 1e-5, "shifted output")
    }
}
