// The three batch-norm controls that are independent of the mode, and
// freeze()/unfreeze() for fine-tuning.

import NormKitCore
@testable import NormKitNN
import Testing

@Suite("Batch-norm controls and freezing")
struct BatchNormControlTests {
    let layout = BatchNormLayout(kind: .batchNorm1d, shape: [8, 3], featureAxis: 1)

    /// A layer whose running estimates have moved away from 0 and 1.
    private func warmedUpLayer() throws -> BatchNorm {
        let layer = layout.makeLayer()
        for seed in 500..<503 { _ = try layer(tensor(layout.batch(seed: UInt64(seed)), shape: layout.shape)) }
        return layer
    }

    private func runningStatistics(_ layer: BatchNorm) throws -> (mean: [Double], variance: [Double]) {
        (doubles(try #require(layer.runningMean)), doubles(try #require(layer.runningVariance)))
    }

    @Test("a frozen layer in training mode normalizes with the running estimates, never updates them, and γ, β get no gradient")
    func frozenLayerInTrainingMode() throws {
        let layer = try warmedUpLayer()
        let before = try runningStatistics(layer)
        let tracked = layer.numBatchesTracked

        layer.freeze()
        layer.train()
        let x = layout.batch(seed: 510)
        let y = try layer(leaf(x, shape: layout.shape).tensor)
        y.backward(gradient: tensor(randomDoubles(layout.count, seed: 511), shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: 1, gamma: nil, beta: nil,
                                                  epsilon: 1e-5, statistics: before)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(try runningStatistics(layer).mean == before.mean)
        #expect(try runningStatistics(layer).variance == before.variance)
        #expect(layer.numBatchesTracked == tracked)
        #expect(layer.weight?.gradient == nil)
        #expect(layer.bias?.gradient == nil)
        #expect(layer.trainableParameters().isEmpty)
    }

    @Test("unfreeze() returns to batch statistics and running updates in training, and γ, β train again")
    func unfreezeRestoresTraining() throws {
        let layer = try warmedUpLayer()
        layer.freeze()
        layer.unfreeze()
        let tracked = layer.numBatchesTracked
        let x = layout.batch(seed: 520)

        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: 1, gamma: nil, beta: nil, epsilon: 1e-5)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(layer.numBatchesTracked == tracked + 1)
        #expect(layer.trainableParameters().count == 2)
    }

    @Test("statistics = .batch normalizes with the batch in inference mode without updating the running estimates")
    func batchStatisticsInInference() throws {
        let layer = try warmedUpLayer()
        let before = try runningStatistics(layer)
        layer.statistics = .batch
        layer.eval()
        let x = layout.batch(seed: 530)

        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: 1, gamma: nil, beta: nil, epsilon: 1e-5)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(try runningStatistics(layer).mean == before.mean)
    }

    @Test("runningStatisticsUpdates = .never keeps batch statistics in training but stops the running updates")
    func neverUpdateInTraining() throws {
        let layer = try warmedUpLayer()
        let before = try runningStatistics(layer)
        layer.runningStatisticsUpdates = .never
        let x = layout.batch(seed: 540)

        let y = try layer(tensor(x, shape: layout.shape))

        let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: 1, gamma: nil, beta: nil, epsilon: 1e-5)
        expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(try runningStatistics(layer).mean == before.mean)
        #expect(try runningStatistics(layer).variance == before.variance)
    }

    @Test("every row of the controls table: which statistics normalize and whether the running estimates move",
          arguments: [BatchNorm.StatisticsChoice.followMode, .batch, .running], [Mode.training, .inference])
    func everyCombinationOfTheControls(statistics: BatchNorm.StatisticsChoice, mode: Mode) throws {
        for updates in [BatchNorm.RunningStatisticsUpdates.followMode, .never] {
            for affineTrains in [true, false] {
                let layer = try warmedUpLayer()
                let before = try runningStatistics(layer)
                let tracked = layer.numBatchesTracked
                layer.statistics = statistics
                layer.runningStatisticsUpdates = updates
                layer.areAffineParametersTrainable = affineTrains
                layer.setMode(mode)
                let x = layout.batch(seed: 550)
                let label = "\(statistics), \(mode), updates \(updates), γ/β train \(affineTrains)"

                let y = try layer(leaf(x, shape: layout.shape).tensor)
                y.backward(gradient: tensor(randomDoubles(layout.count, seed: 551), shape: layout.shape))

                let usesBatch = statistics == .batch || (statistics == .followMode && mode == .training)
                let expected = ReferenceBatchNorm.forward(x, shape: layout.shape, featureAxis: 1, gamma: nil, beta: nil,
                                                          epsilon: 1e-5, statistics: usesBatch ? nil : before)
                expectClose(y.scalars, expected.output, relative: 1e-5, absolute: 1e-6, "output (\(label))")
                let updated = usesBatch && mode == .training && updates == .followMode
                #expect(layer.numBatchesTracked == tracked + (updated ? 1 : 0), "\(label)")
                #expect((try runningStatistics(layer).mean != before.mean) == updated, "\(label)")
                #expect((layer.weight?.gradient != nil) == affineTrains, "\(label)")
                #expect(layer.trainableParameters().count == (affineTrains ? 2 : 0), "\(label)")
            }
        }
    }
}
