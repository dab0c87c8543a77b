// Folding inference-mode batch norms into the Linear layers before them.

import NormKitCore
@testable import NormKitNN
import Testing

/// A batch norm whose γ, β and running estimates are far from their initial
/// values, so that folding has something to fold.
private func trainedBatchNorm(_ features: Int, affine: Bool = true, seed: UInt64) -> BatchNorm1d {
    let layer = BatchNorm1d(features, affine: affine)
    layer.runningMean = tensor(randomDoubles(features, in: -2...2, seed: seed))
    layer.runningVariance = tensor(randomDoubles(features, in: 0.1...4, seed: seed + 1))
    if affine {
        layer.weight!.value = tensor(randomDoubles(features, in: -2...2, seed: seed + 2))
        layer.bias!.value = tensor(randomDoubles(features, in: -1...1, seed: seed + 3))
    }
    return layer
}

@Suite("Folding batch norm into Linear")
struct BatchNormFoldingTests {
    @Test("the folded model's outputs equal the unfolded model's in inference within 1e-5")
    func foldedModelMatches() throws {
        let model = Sequential {
            makeLinear(6, 5, seed: 700)
            trainedBatchNorm(5, seed: 701)
            ReLU()
            Linear(5, 4, bias: false, generator: SeededGenerator(seed: 702))   // no bias: folding adds one
            trainedBatchNorm(4, affine: false, seed: 703)
            Sequential {
                makeLinear(4, 3, seed: 704)
                BatchNormalization()                                         // lazy, channels-last (= axis 1 here)
            }
        }
        let x = tensor(randomDoubles(8 * 6, in: -2...2, seed: 705), shape: [8, 6])
        _ = try model(x)   // builds the lazy layer (and updates its running estimates once)
        model.eval()
        let unfolded = try model(x)

        let folded = try model.foldingBatchNorms()
        let output = try folded(x)

        expectClose(output.scalars, doubles(unfolded), relative: 1e-5, absolute: 1e-5, "folded vs unfolded")
        #expect(folded.layers.count == 4, "Linear+BN, ReLU, Linear+BN, Sequential")
        #expect(!folded.layers.contains { $0 is BatchNorm })
        let inner = try #require(folded.layers.last as? Sequential)
        #expect(inner.layers.count == 1 && inner.layers[0] is Linear, "the nested pair is folded too")
        #expect(folded.layers[2] is Linear && (folded.layers[2] as! Linear).bias != nil)
        #expect(folded.mode == .inference)
        #expect(model.layers.count == 6, "the original model keeps its layers")
        #expect(try model(x).scalars == unfolded.scalars, "and computes as before")
    }

    @Test("a folded Linear has W' = diag(s)·W and b' = (b − μ)·s + β with s = γ/√(var + ε)")
    func foldedWeightsFollowTheFormula() throws {
        let linear = makeLinear(3, 2, seed: 710)
        let batchNorm = trainedBatchNorm(2, seed: 711)
        batchNorm.eval()

        let folded = try #require(try linear.foldingBatchNorm(batchNorm) as? Linear)

        let w = doubles(linear.weight!.value), b = doubles(linear.bias!.value)
        let mean = doubles(batchNorm.runningMean!), variance = doubles(batchNorm.runningVariance!)
        let gamma = doubles(batchNorm.weight!.value), beta = doubles(batchNorm.bias!.value)
        let s = (0..<2).map { gamma[$0] / (variance[$0] + 1e-5).squareRoot() }
        expectClose(folded.weight!.value, (0..<6).map { w[$0] * s[$0 / 3] }, relative: 1e-6, "W'")
        expectClose(folded.bias!.value, (0..<2).map { (b[$0] - mean[$0]) * s[$0] + beta[$0] }, relative: 1e-6,
                    absolute: 1e-7, "b'")
    }

    @Test("folding is refused in training mode, without running statistics, and with statistics = .batch")
    func foldingIsRefused() throws {
        let linear = makeLinear(3, 2, seed: 720)

        let training = trainedBatchNorm(2, seed: 721)
        #expect(throws: BatchNormFoldingError.trainingMode(layer: training.description)) {
            try linear.foldingBatchNorm(training)
        }

        let untracked = BatchNorm1d(2, tracksRunningStatistics: false)
        untracked.eval()
        #expect(throws: BatchNormFoldingError.untrackedRunningStatistics(layer: untracked.description)) {
            try linear.foldingBatchNorm(untracked)
        }

        let batchStatistics = trainedBatchNorm(2, seed: 722)
        batchStatistics.eval()
        batchStatistics.statistics = .batch
        #expect(throws: BatchNormFoldingError.batchStatistics(layer: batchStatistics.description)) {
            try linear.foldingBatchNorm(batchStatistics)
        }

        let wrongWidth = trainedBatchNorm(3, seed: 723)
        wrongWidth.eval()
        #expect(throws: BatchNormFoldingError.featureMismatch(layer: linear.description,
                                                              batchNorm: wrongWidth.description)) {
            try linear.foldingBatchNorm(wrongWidth)
        }
    }

    @Test("a frozen batch norm folds in training mode too: it normalizes with its running estimates in both modes")
    func frozenBatchNormFoldsInTrainingMode() throws {
        let linear = makeLinear(3, 2, seed: 740)
        let frozen = trainedBatchNorm(2, seed: 741)
        frozen.freeze()
        let x = tensor(randomDoubles(12, seed: 742), shape: [4, 3])
        let expected = try frozen(linear(x))

        let folded = try linear.foldingBatchNorm(frozen)

        #expect(frozen.mode == .training)
        expectClose(doubles(try folded(x)), doubles(expected), relative: 1e-5, absolute: 1e-6, "folded output")
    }

    @Test("a model in training mode is refused with a message that says to call eval()")
    func sequentialInTrainingModeIsRefused() throws {
        let model = Sequential {
            makeLinear(3, 2, seed: 730)
            trainedBatchNorm(2, seed: 731)
        }
        let error = try #require(throws: BatchNormFoldingError.self) { try model.foldingBatchNorms() }
        #expect(error.description.contains("training mode") && error.description.contains("eval()"),
                "\(error.description)")
        #expect(error.description.contains("BatchNorm1d(2"), "names the layer: \(error.description)")
    }
}
