// Every batch-norm option on every layout, gradients by finite differences of
// a Double reference; then Batch Renormalization and ghost batches on their own.

import NormKitCore
@testable import NormKitNN
import Testing

/// One configuration of the layer whose gradients are checked.
enum BatchNormOption: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case affineOffTraining, affineOffInference
    case untrackedTraining, untrackedInference
    case renormalizationTraining, renormalizationInference
    case ghostTraining, ghostUntrackedInference, ghostRenormalizationTraining

    var testDescription: String { rawValue }

    var affine: Bool { self != .affineOffTraining && self != .affineOffInference }
    var tracks: Bool { self != .untrackedTraining && self != .untrackedInference && self != .ghostUntrackedInference }
    var isInference: Bool {
        [.affineOffInference, .untrackedInference, .renormalizationInference, .ghostUntrackedInference].contains(self)
    }
    var renormalizes: Bool {
        [.renormalizationTraining, .renormalizationInference, .ghostRenormalizationTraining].contains(self)
    }
    var usesGhostBatches: Bool { [.ghostTraining, .ghostUntrackedInference, .ghostRenormalizationTraining].contains(self) }
}

/// Running estimates (exact in Float) away from the batches' statistics, so
/// that renormalization's r and d are not 1 and 0 and some are clipped.
private func runningEstimates(_ features: Int, seed: UInt64) -> (mean: [Double], variance: [Double]) {
    (randomDoubles(features, in: -1...1, seed: seed), randomDoubles(features, in: 0.25...4, seed: seed + 1))
}

private let renormalizationLimits = (rMax: 1.5, dMax: 0.5)

@Suite("Batch-norm gradients for every layout and option, by finite differences")
struct BatchNormOptionGradientTests {
    @Test("dL/dx, dL/dγ and dL/dβ match central differences of the Double reference",
          arguments: BatchNormLayout.all, BatchNormOption.allCases)
    func gradientsMatchFiniteDifferences(layout: BatchNormLayout, option: BatchNormOption) throws {
        let ghostBatchSize = option.usesGhostBatches ? layout.ghostBatchSize : nil
        let layer = layout.makeLayer(
            affine: option.affine, tracksRunningStatistics: option.tracks,
            renormalization: option.renormalizes
                ? .constant(rMax: Float(renormalizationLimits.rMax), dMax: Float(renormalizationLimits.dMax)) : nil,
            ghostBatchSize: ghostBatchSize)
        let running = runningEstimates(layout.features, seed: 600)
        if option.tracks {
            layer.runningMean = tensor(running.mean)
            layer.runningVariance = tensor(running.variance)
        }
        let gamma = randomDoubles(layout.features, in: 0.5...1.5, seed: 601)
        let beta = randomDoubles(layout.features, seed: 602)
        if option.affine {
            layer.weight!.value = tensor(gamma)
            layer.bias!.value = tensor(beta)
        }
        if option.isInference { layer.eval() }
        let x = layout.batch(seed: 603)
        let w = randomDoubles(layout.count, seed: 604)
        let input = leaf(x, shape: layout.shape)

        let y = try layer(input.tensor)
        y.backward(gradient: tensor(w, shape: layout.shape))

        // Batch statistics (per ghost batch) whenever the layer uses them; r and d
        // are computed once, at x, and held constant as the method prescribes.
        let usesBatch = !option.isInference || !option.tracks
        let corrections: [ReferenceBatchNorm.Correction]? = option.renormalizes && usesBatch
            ? ReferenceBatchNorm.ghostForward(x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: nil,
                                              beta: nil, epsilon: 1e-5, ghostBatchSize: ghostBatchSize).groups.map {
                ReferenceBatchNorm.correction(batch: $0, runningMean: running.mean, runningVariance: running.variance,
                                              epsilon: 1e-5, rMax: renormalizationLimits.rMax,
                                              dMax: renormalizationLimits.dMax)
            }
            : nil
        func reference(_ x: [Double], _ g: [Double], _ b: [Double]) -> [Double] {
            let (g, b) = option.affine ? (g, b) : (nil, nil)
            guard usesBatch else {
                return ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: g,
                                                  beta: b, epsilon: 1e-5, statistics: running).output
            }
            return ReferenceBatchNorm.ghostForward(x, shape: layout.shape, featureAxis: layout.featureAxis, gamma: g,
                                                   beta: b, epsilon: 1e-5, ghostBatchSize: ghostBatchSize,
                                                   corrections: corrections).output
        }
        expectClose(y.scalars, reference(x, gamma, beta), relative: 1e-5, absolute: 1e-5, "output")
        let dx = centralDifferences(at: x) { weightedSum(reference($0, gamma, beta), w) }
        expectClose(input.node.gradient, dx, relative: 1e-4, absolute: 1e-5, "dL/dx")
        if option.affine {
            let dGamma = centralDifferences(at: gamma) { weightedSum(reference(x, $0, beta), w) }
            let dBeta = centralDifferences(at: beta) { weightedSum(reference(x, gamma, $0), w) }
            expectClose(layer.weight?.gradient, dGamma, relative: 1e-4, absolute: 1e-5, "dL/dγ")
            expectClose(layer.bias?.gradient, dBeta, relative: 1e-4, absolute: 1e-5, "dL/dβ")
        } else {
            #expect(layer.parameters().isEmpty)
        }
        if let corrections {
            let reported = layer.lastRenormalizationCorrections
            expectClose(reported.flatMap(\.r), corrections.flatMap(\.r), relative: 1e-6, "r per ghost batch")
            expectClose(reported.flatMap(\.d), corrections.flatMap(\.d), relative: 1e-6, absolute: 1e-7,
                        "d per ghost batch")
            #expect(corrections.flatMap(\.r).contains(renormalizationLimits.rMax)
                    || corrections.flatMap(\.r).contains(1 / renormalizationLimits.rMax)
                    || corrections.flatMap(\.d).contains { abs($0) == renormalizationLimits.dMax },
                    "the data clips some r or d, so the clipping is exercised")
        }
    }
}

// MARK: - Batch Renormalization

@Suite("Batch Renormalization")
struct BatchRenormalizationTests {
    @Test("linearWarmUp is plain batch norm up to plainSteps, then grows linearly to rMax and dMax and stays")
    func linearWarmUpSchedule() {
        let schedule = BatchRenormalization.linearWarmUp(rMax: 3, dMax: 5, plainSteps: 10, rMaxReachedAt: 50,
                                                         dMaxReachedAt: 30)
        let expected: [(step: Int, rMax: Float, dMax: Float)] = [
            (0, 1, 0), (10, 1, 0), (20, 1.5, 2.5), (30, 2, 5), (50, 3, 5), (1000, 3, 5),
        ]
        for (step, rMax, dMax) in expected {
            let limits = schedule.limits(atStep: step)
            expectClose(limits.rMax, Double(rMax), relative: 1e-6, "rMax at step \(step)")
            expectClose(limits.dMax, Double(dMax), relative: 1e-6, "dMax at step \(step)")
        }
        let paper = BatchRenormalization.paperSchedule
        #expect(paper.limits(atStep: 4999) == .init(rMax: 1, dMax: 0))
        expectClose(paper.limits(atStep: 22_500).rMax, 2, relative: 1e-6, "paper rMax halfway (5k → 40k)")
        expectClose(paper.limits(atStep: 22_500).dMax, 4.375, relative: 1e-6, "paper dMax at 22.5k (5k → 25k)")
        #expect(paper.limits(atStep: 40_000) == .init(rMax: 3, dMax: 5))
    }

    @Test("a schedule of your own is a closure of the step, as in the README")
    func customSchedule() {
        let custom = BatchRenormalization { step in .init(rMax: step < 100 ? 1 : 2, dMax: 0) }
        #expect(custom.limits(atStep: 99) == .init(rMax: 1, dMax: 0))
        #expect(custom.limits(atStep: 100) == .init(rMax: 2, dMax: 0))
        let layer = BatchNorm2d(32, renormalization: custom)
        #expect(layer.renormalization?.limits(atStep: 150).rMax == 2)
        #expect(layer.description.contains("custom schedule"), "\(layer.description)")
    }

    @Test("the schedule's step is numBatchesTracked: plain batch norm first, corrections once the limits open")
    func layerFollowsTheSchedule() throws {
        let layout = BatchNormLayout.all[1]
        let renormalization = BatchRenormalization.linearWarmUp(rMax: 2, dMax: 1, plainSteps: 1, rMaxReachedAt: 2,
                                                                dMaxReachedAt: 2)
        let layer = layout.makeLayer(renormalization: renormalization)
        let plain = layout.makeLayer()
        for step in 0..<3 {
            let x = tensor(layout.batch(seed: 610 + UInt64(step)), shape: layout.shape)
            #expect(layer.numBatchesTracked == step)
            let y = try layer(x), yPlain = try plain(x)
            let corrections = try #require(layer.lastRenormalizationCorrections.first)
            if step < 2 {
                // Limits (1, 0): r = 1, d = 0, exactly plain batch norm.
                #expect(corrections.r.allSatisfy { $0 == 1 } && corrections.d.allSatisfy { $0 == 0 })
                #expect(y.scalars == yPlain.scalars, "step \(step): plain batch norm")
            } else {
                #expect(corrections.d.contains { $0 != 0 }, "step 2: d is corrected")
                #expect(y.scalars != yPlain.scalars)
            }
            // The running estimates are updated exactly as without renormalization.
            #expect(layer.runningMean?.scalars == plain.runningMean?.scalars)
            #expect(layer.runningVariance?.scalars == plain.runningVariance?.scalars)
        }
    }

    @Test("when r and d are not clipped, the training output is the inference output (Ioffe 2017, §3)")
    func unclippedTrainingMatchesInference() throws {
        let layout = BatchNormLayout.all[4]
        let layer = layout.makeLayer(renormalization: .constant(rMax: 100, dMax: 100))
        let running = runningEstimates(layout.features, seed: 620)
        layer.runningMean = tensor(running.mean)
        layer.runningVariance = tensor(running.variance)
        layer.weight!.value = tensor(randomDoubles(layout.features, in: 0.5...1.5, seed: 621))
        layer.bias!.value = tensor(randomDoubles(layout.features, seed: 622))
        let x = tensor(layout.batch(seed: 623), shape: layout.shape)

        layer.runningStatisticsUpdates = .never
        let trained = try layer(x)
        layer.eval()
        let inferred = try layer(x)

        expectClose(trained.scalars, doubles(inferred), relative: 1e-5, absolute: 1e-5, "training vs inference")
        #expect(layer.numBatchesTracked == 0, "with updates off, the step does not advance")
    }

    @Test("renormalization in inference mode normalizes with the running estimates, like plain batch norm")
    func inferenceIsUnchanged() throws {
        let layout = BatchNormLayout.all[3]
        let layer = layout.makeLayer(renormalization: .constant(rMax: 1.5, dMax: 0.5))
        let plain = layout.makeLayer()
        for seed in 630..<633 {
            let x = tensor(layout.batch(seed: UInt64(seed)), shape: layout.shape)
            _ = try layer(x)
            _ = try plain(x)
        }
        layer.eval()
        plain.eval()
        let x = tensor(layout.batch(seed: 633), shape: layout.shape)
        #expect(try layer(x).scalars == plain(x).scalars)
    }
}

// MARK: - Ghost batches

@Suite("Ghost batch normalization")
struct GhostBatchNormTests {
    @Test("each ghost batch is normalized with its own statistics; the running estimates move once, to the pooled ones",
          arguments: [false, true])
    func ghostBatchesAndRunningEstimates(unbiased: Bool) throws {
        // 7 samples in ghost batches of 3: 3 + 3 + 1, the last with one sample of L = 4 values.
        let shape = [7, 2, 4]
        let layer = BatchNorm(featureCount: 2, unbiasedRunningVariance: unbiased, ghostBatchSize: 3)
        let x = BatchNormLayout(kind: .general, shape: shape, featureAxis: 1).batch(seed: 640)

        let y = try layer(tensor(x, shape: shape))

        let expected = ReferenceBatchNorm.ghostForward(x, shape: shape, featureAxis: 1, gamma: nil, beta: nil,
                                                       epsilon: 1e-5, ghostBatchSize: 3)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(expected.groups.map(\.count) == [12, 12, 4])
        #expect(layer.lastGhostBatchStatistics.map(\.count) == [12, 12, 4])
        for (k, group) in expected.groups.enumerated() {
            expectClose(layer.lastGhostBatchStatistics[k].mean, group.mean, relative: 1e-6, absolute: 1e-7,
                        "ghost batch \(k) mean")
        }
        // One update: toward the whole batch's mean and the pooled within-ghost variance.
        let whole = ReferenceBatchNorm.forward(x, shape: shape, featureAxis: 1, gamma: nil, beta: nil, epsilon: 1e-5)
        let pooled = (0..<2).map { c in
            expected.groups.reduce(0.0) { $0 + Double($1.count) * $1.variance[c] }
                / (unbiased ? Double(28 - 3) : 28)
        }
        #expect(layer.numBatchesTracked == 1)
        expectClose(layer.runningMean, whole.mean.map { 0.1 * $0 }, relative: 1e-6, absolute: 1e-7, "running mean")
        expectClose(layer.runningVariance, pooled.map { 0.9 + 0.1 * $0 }, relative: 1e-6, "running variance")
    }

    @Test("a ghost batch size of at least the batch is plain batch norm, bit for bit")
    func wholeBatchGhostIsPlain() throws {
        let layout = BatchNormLayout.all[5]
        let ghost = layout.makeLayer(ghostBatchSize: layout.shape[0])
        let plain = layout.makeLayer()
        let x = tensor(layout.batch(seed: 650), shape: layout.shape)
        #expect(try ghost(x).scalars == plain(x).scalars)
        #expect(ghost.runningVariance?.scalars == plain.runningVariance?.scalars)
    }

    @Test("a last ghost batch with one value per feature throws singleValuePerChannel naming that ghost batch")
    func singleValueGhostBatchThrows() throws {
        let layer = BatchNorm1d(3, ghostBatchSize: 4)
        let x = tensor(BatchNormLayout(kind: .batchNorm1d, shape: [9, 3], featureAxis: 1).batch(seed: 660), shape: [9, 3])

        let error = try #require(throws: BatchNormError.self) { try layer(x) }

        guard case let .singleValuePerChannel(name, shape) = error else {
            Issue.record("expected singleValuePerChannel, got \(error)")
            return
        }
        #expect(shape == [1, 3], "the offending ghost batch's shape")
        #expect(name.contains("ghostBatchSize: 4") && name.contains("ghost batch 3 of 3"), "\(name)")
        #expect(error.description.contains("dropsLastPartialBatch"), "\(error.description)")
        #expect(layer.numBatchesTracked == 0)
        // In inference the same input normalizes with the running estimates.
        layer.eval()
        #expect(try layer(x).shape == [9, 3])
        // Unless the layer normalizes with the batch in inference too: then the error says so.
        layer.statistics = .batch
        let inInference = try #require(throws: BatchNormError.self) { try layer(x) }
        guard case let .singleValuePerChannelWithBatchStatisticsInInference(inferenceName, inferenceShape) = inInference else {
            Issue.record("expected singleValuePerChannelWithBatchStatisticsInInference, got \(inInference)")
            return
        }
        #expect(inferenceShape == [1, 3] && inferenceName.contains("ghost batch 3 of 3"), "\(inferenceName)")
    }
}
