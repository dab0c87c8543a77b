// The batch-norm layers against the Double reference: forward in both modes,
// the three ways of keeping running estimates, gradients by finite differences,
// initial state and the `affine` / `tracksRunningStatistics` switches.

import NormKitCore
@testable import NormKitNN
import Testing

/// One way of laying out the features: which layer, which input shape, which axis.
struct BatchNormLayout: Sendable, CustomTestStringConvertible {
    enum Kind: Sendable { case batchNorm1d, batchNorm2d, batchNorm3d, general }
    let kind: Kind
    let shape: [Int]
    let featureAxis: Int

    var features: Int { shape[featureAxis < 0 ? featureAxis + shape.count : featureAxis] }
    var count: Int { shape.reduce(1, *) }

    var testDescription: String {
        let name = switch kind {
        case .batchNorm1d: "BatchNorm1d"
        case .batchNorm2d: "BatchNorm2d"
        case .batchNorm3d: "BatchNorm3d"
        case .general: "BatchNorm(featureAxis: \(featureAxis))"
        }
        return "\(name) on \(shape)"
    }

    /// PyTorch-style layer (unbiased running variance) for this layout.
    func makeLayer(runningAverage: RunningAverage = .newBatchWeight(0.1), affine: Bool = true,
                   tracksRunningStatistics: Bool = true, renormalization: BatchRenormalization? = nil,
                   ghostBatchSize: Int? = nil) -> BatchNorm {
        switch kind {
        case .batchNorm1d:
            BatchNorm1d(features, runningAverage: runningAverage, affine: affine,
                        tracksRunningStatistics: tracksRunningStatistics, renormalization: renormalization,
                        ghostBatchSize: ghostBatchSize)
        case .batchNorm2d:
            BatchNorm2d(features, runningAverage: runningAverage, affine: affine,
                        tracksRunningStatistics: tracksRunningStatistics, renormalization: renormalization,
                        ghostBatchSize: ghostBatchSize)
        case .batchNorm3d:
            BatchNorm3d(features, runningAverage: runningAverage, affine: affine,
                        tracksRunningStatistics: tracksRunningStatistics, renormalization: renormalization,
                        ghostBatchSize: ghostBatchSize)
        case .general:
            BatchNorm(featureCount: features, featureAxis: featureAxis, runningAverage: runningAverage, affine: affine,
                      tracksRunningStatistics: tracksRunningStatistics, renormalization: renormalization,
                      ghostBatchSize: ghostBatchSize)
        }
    }

    /// A ghost batch size that splits this layout's batch into two (the second
    /// possibly smaller), each with more than one value per feature.
    var ghostBatchSize: Int { (shape[0] + 1) / 2 }

    /// A batch whose features have clearly different means and spreads
    /// (centres 0.5, −2, 3, 0, …; spreads 1, 0.5, 2, 0.1, …).
    func batch(seed: UInt64) -> [Double] {
        let centres: [Double] = [0.5, -2, 3, 0, 1.25]
        let spreads: [Double] = [1, 0.5, 2, 0.1, 0.75]
        let unit = randomDoubles(count, seed: seed)
        return unit.indices.map { i in
            let c = ReferenceBatchNorm.feature(of: i, shape: shape, featureAxis: featureAxis)
            return Double(Float(centres[c % centres.count] + spreads[c % spreads.count] * unit[i]))
        }
    }

    /// Every layout: (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W) channels-first
    /// through the PyTorch spellings and `BatchNorm`, and channels-last of ranks 3 to 5.
    static let all: [BatchNormLayout] = [
        BatchNormLayout(kind: .batchNorm1d, shape: [6, 4], featureAxis: 1),
        BatchNormLayout(kind: .batchNorm1d, shape: [3, 4, 5], featureAxis: 1),
        BatchNormLayout(kind: .general, shape: [3, 4, 5], featureAxis: 1),
        BatchNormLayout(kind: .general, shape: [3, 5, 4], featureAxis: -1),
        BatchNormLayout(kind: .batchNorm2d, shape: [2, 3, 2, 3], featureAxis: 1),
        BatchNormLayout(kind: .general, shape: [3, 2, 2, 3], featureAxis: -1),
        BatchNormLayout(kind: .batchNorm3d, shape: [2, 2, 2, 2, 3], featureAxis: 1),
        BatchNormLayout(kind: .general, shape: [2, 2, 3, 2, 3], featureAxis: -1),
    ]
}

/// Non-trivial γ and β (exact in Float) for `features` features.
private func affineValues(_ features: Int) -> (gamma: [Double], beta: [Double]) {
    let gamma: [Double] = [1.5, -0.5, 2, 0.75, 1.25]
    let beta: [Double] = [0.25, -1, 0.5, 0, 2]
    return ((0..<features).map { gamma[$0 % gamma.count] }, (0..<features).map { beta[$0 % beta.count] })
}

private func setAffine(_ layer: BatchNorm, gamma: [Double], beta: [Double]) {
    layer.weight!.value = tensor(gamma)
    layer.bias!.value = tensor(beta)
}

@Suite("BatchNorm layers against a Double reference")
struct BatchNormForwardTests {
    @Test("training forward normalizes with the batch's mean and biased variance, then applies γ and β",
          arguments: BatchNormLayout.all)
    func trainingForwardMatchesReference(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer()
        let (gamma, beta) = affineValues(layout.features)
        setAffine(layer, gamma: gamma, beta: beta)
        let x = layout.batch(seed: 1)

        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis,
                                                  gamma: gamma, beta: beta, epsilon: 1e-5)
        #expect(y.shape == layout.shape)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        let statistics = try #require(layer.lastBatchStatistics)
        expectClose(statistics.mean, expected.mean, relative: 1e-5, absolute: 1e-7, "batch mean")
        expectClose(statistics.variance, expected.variance, relative: 1e-5, "batch variance")
        #expect(statistics.count == expected.count)
    }

    @Test("inference forward normalizes with the running estimates and leaves them unchanged",
          arguments: BatchNormLayout.all)
    func inferenceForwardUsesRunningStatistics(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer()
        let (gamma, beta) = affineValues(layout.features)
        setAffine(layer, gamma: gamma, beta: beta)
        // Two training steps give running estimates that are neither the initial
        // values nor the statistics of the batch used below.
        _ = try layer(tensor(layout.batch(seed: 10), shape: layout.shape))
        _ = try layer(tensor(layout.batch(seed: 11), shape: layout.shape))
        let runningMean = try #require(layer.runningMean).scalars
        let runningVariance = try #require(layer.runningVariance).scalars
        let tracked = layer.numBatchesTracked

        layer.eval()
        let x = layout.batch(seed: 12)
        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(
            x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: gamma, beta: beta, epsilon: 1e-5,
            statistics: (runningMean.map { Double($0) }, runningVariance.map { Double($0) }))
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        // Exactly unchanged: inference must not touch the running estimates.
        #expect(layer.runningMean?.scalars == runningMean)
        #expect(layer.runningVariance?.scalars == runningVariance)
        #expect(layer.numBatchesTracked == tracked)
    }

    @Test("a new layer starts with γ = 1, β = 0, running mean 0, running variance 1 and no batches tracked",
          arguments: BatchNormLayout.all)
    func initialState(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer()
        let ones = [Float](repeating: 1, count: layout.features)
        let zeros = [Float](repeating: 0, count: layout.features)
        #expect(try #require(layer.weight).value.scalars == ones)
        #expect(try #require(layer.bias).value.scalars == zeros)
        #expect(try #require(layer.runningMean).scalars == zeros)
        #expect(try #require(layer.runningVariance).scalars == ones)
        #expect(layer.numBatchesTracked == 0)
        #expect(layer.nonFiniteBatchCount == 0)
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(layer.mode == .training)
    }

    @Test("without running statistics the batch's statistics normalize in inference too, and nothing is tracked",
          arguments: BatchNormLayout.all)
    func untrackedStatisticsNormalizeWithTheBatchInInference(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer(tracksRunningStatistics: false)
        #expect(layer.runningMean == nil)
        #expect(layer.runningVariance == nil)
        let (gamma, beta) = affineValues(layout.features)
        setAffine(layer, gamma: gamma, beta: beta)
        let x = layout.batch(seed: 20)
        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis,
                                                  gamma: gamma, beta: beta, epsilon: 1e-5)

        let trained = try layer(tensor(x, shape: layout.shape))
        layer.eval()
        let inferred = try layer(tensor(x, shape: layout.shape))

        expectClose(trained.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "training output")
        expectClose(inferred.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "inference output")
        #expect(layer.numBatchesTracked == 0)
    }

    @Test("affine: false creates no parameters and outputs the plain normalized values", arguments: BatchNormLayout.all)
    func nonAffineLayerHasNoParameters(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer(affine: false)
        #expect(layer.weight == nil)
        #expect(layer.bias == nil)
        #expect(layer.parameters().isEmpty)
        #expect(layer.parameterCount == 0)
        let x = layout.batch(seed: 30)

        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis,
                                                  gamma: nil, beta: nil, epsilon: 1e-5)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(try #require(layer.runningMean).scalars != [Float](repeating: 0, count: layout.features),
                "running estimates still follow the batches")
    }

    @Test("Keras' BatchNormalization() takes its feature count from the first input and uses ε = 1e-3")
    func kerasBatchNormalizationBuildsLazily() throws {
        let layer = BatchNormalization()
        #expect(layer.featureCount == nil)
        #expect(layer.parameters().isEmpty)
        let shape = [3, 5, 4]
        let x = BatchNormLayout(kind: .general, shape: shape, featureAxis: -1).batch(seed: 40)

        let y = try layer(tensor(x, shape: shape))

        #expect(layer.featureCount == 4)
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        let expected = ReferenceBatchNorm.forward(x, shape: shape, featureAxis: -1, gamma: nil, beta: nil, epsilon: 1e-3)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
    }

    @Test("Keras' center and scale are independent: each keeps only its own parameter, which trains",
          arguments: [(center: true, scale: false), (center: false, scale: true)])
    func kerasCenterAndScaleApart(options: (center: Bool, scale: Bool)) throws {
        let layer = BatchNormalization(center: options.center, scale: options.scale)
        layer.setMode(.training)
        let shape = [6, 3]
        let x = BatchNormLayout(kind: .general, shape: shape, featureAxis: -1).batch(seed: 41)
        _ = try layer(tensor(x, shape: shape))
        let gamma: [Double]? = options.scale ? [0.5, 2, -1] : nil, beta: [Double]? = options.center ? [1, -2, 0.25] : nil
        if let gamma { try #require(layer.weight).value = Tensor(gamma.map { Float($0) }) }
        if let beta { try #require(layer.bias).value = Tensor(beta.map { Float($0) }) }

        let y = try layer(tensor(x, shape: shape))

        #expect(layer.namedParameters().map(\.0) == (options.scale ? ["weight"] : ["bias"]))
        #expect(layer.isAffine == false && layer.areAffineParametersTrainable)
        let expected = ReferenceBatchNorm.forward(x, shape: shape, featureAxis: -1, gamma: gamma, beta: beta, epsilon: 1e-3)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        (y * y).sum().backward()
        #expect(try #require(layer.parameters().first).gradient != nil)
    }
}

// MARK: - Running estimates

/// A way of folding batch statistics into running estimates, with the layer
/// that uses it and the reference formula.
struct RunningAverageCase: Sendable, CustomTestStringConvertible {
    enum Kind: Sendable { case pyTorchMomentum, kerasMomentum, cumulative }
    let kind: Kind

    var testDescription: String {
        switch kind {
        case .pyTorchMomentum: ".newBatchWeight(0.1), unbiased variance"
        case .kerasMomentum: "BatchNormalization(): .oldValueWeight(0.99), biased variance"
        case .cumulative: ".cumulativeAverage, unbiased variance"
        }
    }

    var epsilon: Double { kind == .kerasMomentum ? 1e-3 : 1e-5 }

    func makeLayer(_ layout: BatchNormLayout) -> BatchNorm {
        switch kind {
        case .pyTorchMomentum: layout.makeLayer(runningAverage: .newBatchWeight(0.1))
        case .kerasMomentum: BatchNormalization(axis: layout.featureAxis)
        case .cumulative: layout.makeLayer(runningAverage: .cumulativeAverage)
        }
    }

    /// The running (mean, variance) after the batches `results`, from the definition.
    func expectedRunningStatistics(after results: [ReferenceBatchNorm.Result], features: Int)
        -> (mean: [Double], variance: [Double]) {
        var mean = [Double](repeating: 0, count: features)
        var variance = [Double](repeating: 1, count: features)
        switch kind {
        case .pyTorchMomentum:
            for batch in results {
                let unbiased = batch.unbiasedVariance
                for c in 0..<features {
                    mean[c] = 0.9 * mean[c] + 0.1 * batch.mean[c]
                    variance[c] = 0.9 * variance[c] + 0.1 * unbiased[c]
                }
            }
        case .kerasMomentum:
            for batch in results {
                for c in 0..<features {
                    mean[c] = 0.99 * mean[c] + 0.01 * batch.mean[c]
                    variance[c] = 0.99 * variance[c] + 0.01 * batch.variance[c]
                }
            }
        case .cumulative:
            // The plain average of every batch's statistics.
            for c in 0..<features {
                mean[c] = results.map { $0.mean[c] }.reduce(0, +) / Double(results.count)
                variance[c] = results.map { $0.unbiasedVariance[c] }.reduce(0, +) / Double(results.count)
            }
        }
        return (mean, variance)
    }

    static let all = [RunningAverageCase(kind: .pyTorchMomentum), RunningAverageCase(kind: .kerasMomentum),
                      RunningAverageCase(kind: .cumulative)]
}

@Suite("Running estimates")
struct BatchNormRunningStatisticsTests {
    @Test("running mean and variance follow the reference after 1 and after 3 training steps",
          arguments: RunningAverageCase.all, BatchNormLayout.all)
    func runningStatisticsFollowTheReference(average: RunningAverageCase, layout: BatchNormLayout) throws {
        let layer = average.makeLayer(layout)
        var results: [ReferenceBatchNorm.Result] = []
        for step in 1...3 {
            let x = layout.batch(seed: 100 + UInt64(step))
            _ = try layer(tensor(x, shape: layout.shape))
            results.append(ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis,
                                                      gamma: nil, beta: nil, epsilon: average.epsilon))
            guard step == 1 || step == 3 else { continue }
            let expected = average.expectedRunningStatistics(after: results, features: layout.features)
            expectClose(layer.runningMean, expected.mean, relative: 1e-5, absolute: 1e-7,
                        "running mean after \(step) step(s)")
            expectClose(layer.runningVariance, expected.variance, relative: 1e-5,
                        "running variance after \(step) step(s)")
            #expect(layer.numBatchesTracked == step)
        }
    }

    @Test("the cumulative average after t batches is the plain mean of their statistics, whatever their order")
    func cumulativeAverageIsOrderIndependent() throws {
        let layout = BatchNormLayout.all[0]
        let batches = (0..<4).map { layout.batch(seed: 200 + UInt64($0)) }
        let forward = layout.makeLayer(runningAverage: .cumulativeAverage)
        let backward = layout.makeLayer(runningAverage: .cumulativeAverage)
        for x in batches { _ = try forward(tensor(x, shape: layout.shape)) }
        for x in batches.reversed() { _ = try backward(tensor(x, shape: layout.shape)) }
        #expect(forward.numBatchesTracked == 4)
        expectClose(forward.runningMean, doubles(try #require(backward.runningMean)),
                    relative: 1e-6, absolute: 1e-7, "running mean")
        expectClose(forward.runningVariance, doubles(try #require(backward.runningVariance)),
                    relative: 1e-6, "running variance")
    }
}

// MARK: - Gradients

@Suite("Batch-norm gradients by finite differences")
struct BatchNormGradientTests {
    /// Checks dL/dx, dL/dγ and dL/dβ of L = Σ w ⊙ layer(x) against central
    /// differences of the same L computed with `reference`.
    private func checkGradients(
        layer: BatchNorm, layout: BatchNormLayout, seed: UInt64,
        reference: (_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> [Double],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (gamma, beta) = affineValues(layout.features)
        setAffine(layer, gamma: gamma, beta: beta)
        let x = layout.batch(seed: seed)
        let w = randomDoubles(layout.count, seed: seed + 1)
        let input = leaf(x, shape: layout.shape)

        let y = try layer(input.tensor)
        y.backward(gradient: tensor(w, shape: layout.shape))

        let dx = centralDifferences(at: x) { weightedSum(reference($0, gamma, beta), w) }
        let dGamma = centralDifferences(at: gamma) { weightedSum(reference(x, $0, beta), w) }
        let dBeta = centralDifferences(at: beta) { weightedSum(reference(x, gamma, $0), w) }
        expectClose(input.node.gradient, dx, relative: 1e-4, absolute: 1e-5, "dL/dx", sourceLocation: sourceLocation)
        expectClose(layer.weight?.gradient, dGamma, relative: 1e-4, absolute: 1e-5, "dL/dγ", sourceLocation: sourceLocation)
        expectClose(layer.bias?.gradient, dBeta, relative: 1e-4, absolute: 1e-5, "dL/dβ", sourceLocation: sourceLocation)
    }

    @Test("training-mode gradients of input, γ and β match finite differences of the batch-statistics forward",
          arguments: BatchNormLayout.all)
    func trainingGradients(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer()
        try checkGradients(layer: layer, layout: layout, seed: 300) { x, gamma, beta in
            ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis,
                                       gamma: gamma, beta: beta, epsilon: 1e-5).output
        }
    }

    @Test("inference-mode gradients treat the running estimates as constants", arguments: BatchNormLayout.all)
    func inferenceGradients(layout: BatchNormLayout) throws {
        let layer = layout.makeLayer()
        let runningMean = randomDoubles(layout.features, in: -1...1, seed: 310)
        let runningVariance = randomDoubles(layout.features, in: 0.25...4, seed: 311)
        layer.runningMean = tensor(runningMean)
        layer.runningVariance = tensor(runningVariance)
        layer.eval()
        try checkGradients(layer: layer, layout: layout, seed: 320) { x, gamma, beta in
            ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: gamma,
                                       beta: beta, epsilon: 1e-5, statistics: (runningMean, runningVariance)).output
        }
    }

    @Test("a frozen batch norm still passes the input gradient but gives γ and β none")
    func frozenParametersReceiveNoGradient() throws {
        let layout = BatchNormLayout.all[0]
        let layer = layout.makeLayer()
        for parameter in layer.parameters() { parameter.isTrainable = false }
        let input = leaf(layout.batch(seed: 330), shape: layout.shape)

        let y = try layer(input.tensor)
        y.backward(gradient: tensor(randomDoubles(layout.count, seed: 331), shape: layout.shape))

        #expect(input.node.gradient != nil)
        #expect(layer.weight?.gradient == nil)
        #expect(layer.bias?.gradient == nil)
        #expect(layer.trainableParameters().isEmpty)
    }
}
