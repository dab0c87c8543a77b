// The fused training step against the general autodiff step: the same values
// bit for bit, no tensor allocated in a steady-state step, and reused buffers
// that never alias a value someone kept (copy-on-write).

@testable import NormKitCore
@testable import NormKitNN
import Testing

/// `threeClassData` as a batch source for `fit`.
private func threeClassDataset(seed: UInt64) -> TensorDataset {
    let data = threeClassData(seed: seed)
    return TensorDataset(features: data.x, labels: data.y)
}

private func snapshot(_ model: Module, _ batchNorm: BatchNorm) -> [[Float]] {
    model.parameters().map(\.value.scalars)
        + [batchNorm.runningMean!.scalars, batchNorm.runningVariance!.scalars]
        + [batchNorm.lastBatchStatistics!.mean, batchNorm.lastBatchStatistics!.variance,
           batchNorm.lastBatchStatistics!.inverseStandardDeviation]
}

@Suite("Fused training step")
struct FusedTrainingStepTests {
    @Test("freeze() from a callback during fit takes effect on the fused path as on the general one")
    func freezingDuringFitTakesEffect() throws {
        let data = threeClassDataset(seed: 5)
        func run(fused: Bool) throws -> (state: [[Float]], tracked: Int) {
            let (model, batchNorm) = chainModel(seed: 50, softmax: false)
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: SparseCategoricalCrossentropy(fromLogits: true))
            _ = try model.fit(data, epochs: 3, batchSize: 8, generator: SeededGenerator(seed: 51), progress: .silent,
                              epochFinished: { epoch, _ in if epoch == 1 { batchNorm.freeze() } })
            return (model.parameters().map(\.value.scalars)
                        + [batchNorm.runningMean!.scalars, batchNorm.runningVariance!.scalars],
                    batchNorm.numBatchesTracked)
        }
        let fused = try run(fused: true), general = try run(fused: false)
        // Frozen after epoch 1 (6 batches of 45 examples at 8): epochs 2 and 3 leave the running statistics alone.
        #expect(general.tracked == 6)
        #expect(fused.tracked == general.tracked)
        #expect(fused.state == general.state)
    }

    @Test("a layer change that sends fit's later steps to the general path leaves the last batch's statistics published")
    func statisticsAfterFallingBackMidFitAreTheLastBatchs() throws {
        let data = threeClassDataset(seed: 8)
        func run(fused: Bool) throws -> (state: [[Float]], statistics: [[Float]]) {
            let first = makeLinear(5, 8, seed: 60), batchNorm = BatchNorm1d(8)
            let model = Sequential { first; batchNorm; ReLU(); makeLinear(8, 3, seed: 61) }
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: SparseCategoricalCrossentropy(fromLogits: true))
            // After epoch 1 a non-trainable bias makes the fused step decline every step of epoch 2.
            _ = try model.fit(data, epochs: 2, batchSize: 8, generator: SeededGenerator(seed: 62), progress: .silent,
                              epochFinished: { epoch, _ in if epoch == 1 { first.bias!.isTrainable = false } })
            let statistics = try #require(batchNorm.lastBatchStatistics)
            return (model.parameters().map(\.value.scalars),
                    [statistics.mean, statistics.variance, statistics.inverseStandardDeviation, [Float(statistics.count)]])
        }
        let fused = try run(fused: true), general = try run(fused: false)
        #expect(fused.state == general.state)
        // Epoch 2's last batch, which the general path published, not epoch 1's last one that
        // the fused step still held.
        #expect(fused.statistics == general.statistics)
    }

    @Test("fit's fused step trains to the bitwise same weights, statistics and history as the autodiff step",
          arguments: [true, false])
    func fusedMatchesGeneral(endsInSoftmax: Bool) throws {
        let data = threeClassDataset(seed: 3)
        func run(fused: Bool) throws -> (state: [[Float]], history: History, tracked: Int) {
            let (model, batchNorm) = chainModel(seed: 40, softmax: endsInSoftmax)
            model.allowsFusedTrainingStep = fused
            let loss = SparseCategoricalCrossentropy(fromLogits: !endsInSoftmax)
            model.compile(optimizer: Adam(learningRate: 0.05), loss: loss, metrics: [.accuracy])
            let history = try model.fit(data, epochs: 3, batchSize: 8, validationData: data,
                                        generator: SeededGenerator(seed: 41), progress: .silent)
            return (snapshot(model, batchNorm), history, batchNorm.numBatchesTracked)
        }
        // The fused step is really taken for this model (and not for the general run).
        let (model, _) = chainModel(seed: 40, softmax: endsInSoftmax)
        #expect(FusedTrainingStep(model: model, loss: SparseCategoricalCrossentropy(fromLogits: !endsInSoftmax),
                                  featureShape: [5], capacity: 8) != nil)

        let fused = try run(fused: true), general = try run(fused: false)
        #expect(fused.state == general.state)
        #expect(fused.history.loss == general.history.loss)
        #expect(fused.history.accuracy == general.history.accuracy)
        #expect(fused.history.validationLoss == general.history.validationLoss)
        #expect(fused.tracked == general.tracked && fused.tracked == 3 * 6)
        #expect(fused.history.loss.last! < fused.history.loss.first!, "it learns: \(fused.history.loss)")
    }

    @Test("the seed MLP and CrossEntropyLoss take the fused step; unsupported setups fall back")
    func eligibility() {
        let seed = SeedMLP(inputFeatures: 6, hiddenFeatures: 4, classes: 3)
        #expect(FusedTrainingStep(model: seed, loss: SparseCategoricalCrossentropy(), featureShape: [6], capacity: 4) != nil)
        let logits = chainModel(seed: 1, softmax: false).0
        #expect(FusedTrainingStep(model: logits, loss: CrossEntropyLoss(), featureShape: [5], capacity: 4) != nil)
        // Softmax followed by a loss that applies softmax itself: the general path warns.
        #expect(FusedTrainingStep(model: seed, loss: CrossEntropyLoss(), featureShape: [6], capacity: 4) == nil)
        // Ghost batches, a layer it does not know, a shape it cannot take.
        let ghost = Sequential { makeLinear(5, 8, seed: 1); BatchNorm1d(8, ghostBatchSize: 2); ReLU(); makeLinear(8, 3, seed: 2) }
        #expect(FusedTrainingStep(model: ghost, loss: CrossEntropyLoss(), featureShape: [5], capacity: 4) == nil)
        let sigmoid = Sequential { makeLinear(5, 3, seed: 1); Sigmoid() }
        #expect(FusedTrainingStep(model: sigmoid, loss: SparseCategoricalCrossentropy(), featureShape: [5], capacity: 4) == nil)
        #expect(FusedTrainingStep(model: logits, loss: CrossEntropyLoss(), featureShape: [4], capacity: 4) == nil)
        let flattened = Sequential { Flatten(); makeLinear(6, 3, seed: 1) }
        #expect(FusedTrainingStep(model: flattened, loss: CrossEntropyLoss(), featureShape: [2, 3], capacity: 4) != nil)
    }

    @Test("a steady-state fused step allocates no tensor storage (the general step allocates dozens)")
    func steadyStateAllocatesNoTensors() throws {
        let data = threeClassDataset(seed: 5)
        let (model, _) = chainModel(seed: 50, softmax: true)
        let optimizer = Adam(model.trainableParameters(), learningRate: 0.01)
        let step = try #require(FusedTrainingStep(model: model, loss: SparseCategoricalCrossentropy(),
                                                  featureShape: [5], capacity: 8))
        let batches = (0..<10).map { (($0 * 8) % 40)..<(($0 * 8) % 40 + 8) }
        for batch in batches.prefix(2) { _ = try step.step(data, indices: Array(0..<45)[batch], optimizer: optimizer) }
        var losses: [Float] = []
        losses.reserveCapacity(8)
        let allocations = try countingTensorAllocations {
            for batch in batches.dropFirst(2) {
                losses.append(try #require(try step.step(data, indices: Array(0..<45)[batch], optimizer: optimizer)).loss)
            }
        }
        #expect(allocations == 0)
        let finite = losses.count == 8 && losses.allSatisfy { $0.isFinite }
        #expect(finite)

        // The counter counts: one general step allocates many tensors.
        model.compile(optimizer: optimizer, loss: SparseCategoricalCrossentropy())
        model.allowsFusedTrainingStep = false
        let general = try countingTensorAllocations {
            _ = try model.fit(data, epochs: 1, batchSize: 45, shuffle: false, progress: .silent)
        }
        #expect(general > 10)
    }

    @Test("gradients and weights kept from step k are unchanged by step k + 1 (buffers are reused, never aliased)")
    func keptValuesSurviveTheNextStep() throws {
        let data = threeClassDataset(seed: 6)
        let (model, batchNorm) = chainModel(seed: 60, softmax: true)
        let optimizer = Adam(model.trainableParameters(), learningRate: 0.01)
        let step = try #require(FusedTrainingStep(model: model, loss: SparseCategoricalCrossentropy(),
                                                  featureShape: [5], capacity: 8))
        let order = Array(0..<45)
        _ = try step.step(data, indices: order[0..<8], optimizer: optimizer)
        let parameters = model.parameters()
        let keptGradients = parameters.map { $0.gradient! }, keptValues = parameters.map(\.value)
        let gradientScalars = keptGradients.map(\.scalars), valueScalars = keptValues.map(\.scalars)
        step.publishStatistics()
        let keptStatistics = try #require(batchNorm.lastBatchStatistics)
        let statisticsMean = keptStatistics.mean

        _ = try step.step(data, indices: order[8..<16], optimizer: optimizer)
        step.publishStatistics()

        #expect(keptGradients.map(\.scalars) == gradientScalars)
        #expect(keptValues.map(\.scalars) == valueScalars)
        #expect(keptStatistics.mean == statisticsMean)
        // …while the step did move on: new gradients, new weights, new statistics.
        #expect(parameters.map { $0.gradient!.scalars } != gradientScalars)
        #expect(parameters.map(\.value.scalars) != valueScalars)
        #expect(batchNorm.lastBatchStatistics!.mean != statisticsMean)
    }

    @Test("a batch of one through batch norm throws the layer's error on the fused path too")
    func singleExampleBatchThrows() throws {
        let data = threeClassDataset(seed: 7)
        let (model, _) = chainModel(seed: 70, softmax: true)
        let step = try #require(FusedTrainingStep(model: model, loss: SparseCategoricalCrossentropy(),
                                                  featureShape: [5], capacity: 8))
        #expect(throws: BatchNormError.self) {
            _ = try step.step(data, indices: [3][...], optimizer: Adam(model.trainableParameters()))
        }
    }

    @Test("power by squaring equals repeated multiplication to rounding")
    func powerBySquaring() {
        for (base, exponent) in [(0.9, 0), (0.9, 1), (0.999, 7), (0.999, 1000), (0.9, 200), (0.999, 9375)] {
            var product = 1.0
            for _ in 0..<exponent { product *= base }
            let tolerance = 1e-15 * Double(max(exponent, 1)) * product
            #expect(abs(base.power(exponent) - product) <= tolerance, "\(base)^\(exponent)")
        }
    }
}

/// A batch-norm setup `fit` may meet, the model built fresh for each run, and
/// whether the fused step takes it (false: it must fall back to the general step).
struct FusedBatchNormSetup: CustomTestStringConvertible, Sendable {
    let name: String
    let takesFusedStep: Bool
    let build: @Sendable () -> Sequential
    var testDescription: String { name }

    static let all: [FusedBatchNormSetup] = [
        .init(name: "frozen (running statistics, no updates, fixed γ/β)", takesFusedStep: false) {
            setupModel { let bn = BatchNorm1d(8); bn.freeze(); return bn }
        },
        .init(name: "statistics = .running", takesFusedStep: false) {
            setupModel { let bn = BatchNorm1d(8); bn.statistics = .running; return bn }
        },
        .init(name: "Batch Renormalization", takesFusedStep: false) {
            setupModel { BatchNorm1d(8, renormalization: .constant(rMax: 1.5, dMax: 0.5)) }
        },
        .init(name: "followed by Dropout", takesFusedStep: false) {
            Sequential {
                makeLinear(5, 8, seed: 80); BatchNorm1d(8); ReLU()
                Dropout(0.3, generator: SeededGenerator(seed: 81)); makeLinear(8, 3, seed: 82)
            }
        },
        .init(name: "runningStatisticsUpdates = .never", takesFusedStep: true) {
            setupModel { let bn = BatchNorm1d(8); bn.runningStatisticsUpdates = .never; return bn }
        },
        .init(name: "γ and β not trainable", takesFusedStep: true) {
            setupModel { let bn = BatchNorm1d(8); bn.areAffineParametersTrainable = false; return bn }
        },
        .init(name: "no running statistics, not affine", takesFusedStep: true) {
            setupModel { BatchNorm1d(8, affine: false, tracksRunningStatistics: false) }
        },
        .init(name: "statistics = .batch", takesFusedStep: true) {
            setupModel { let bn = BatchNorm1d(8); bn.statistics = .batch; return bn }
        },
        .init(name: "lazily built Linear (Dense) and channels-last BatchNormalization", takesFusedStep: true) {
            Sequential {
                Linear(outFeatures: 8, generator: SeededGenerator(seed: 80)); BatchNormalization(); ReLU()
                Linear(outFeatures: 3, generator: SeededGenerator(seed: 82))
            }
        },
    ]
}

/// Linear(5, 8) → `norm` → ReLU → Linear(8, 3), from fixed seeds.
private func setupModel(_ norm: () -> BatchNorm) -> Sequential {
    Sequential { makeLinear(5, 8, seed: 80); norm(); ReLU(); makeLinear(8, 3, seed: 82) }
}

/// Every state-dict entry as Float values (integer counters converted), by name.
private func flatState(_ model: Module) -> [String: [Float]] {
    model.stateDict().mapValues {
        switch $0 {
        case .float(let tensor): tensor.scalars
        case .integer(let values, _): values.map(Float.init)
        }
    }
}

@Suite("Fused training step: batch-norm options")
struct FusedTrainingStepOptionTests {
    @Test("each option is either run by the fused step or left to the general step, and fit ends bitwise the same",
          arguments: FusedBatchNormSetup.all)
    func optionTrainsAsTheGeneralStep(_ setup: FusedBatchNormSetup) throws {
        let data = threeClassDataset(seed: 9)
        // Dense layers are lazy: build as fit does before asking whether the fused step applies.
        let probe = setup.build()
        _ = probe.build(inputShape: [8, 5])
        probe.setMode(.training)
        let step = FusedTrainingStep(model: probe, loss: CrossEntropyLoss(), featureShape: [5], capacity: 8)
        #expect((step != nil) == setup.takesFusedStep)

        func run(fused: Bool) throws -> (state: [String: [Float]], history: History) {
            let model = setup.build()
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss(), metrics: [.accuracy])
            let history = try model.fit(data, epochs: 2, batchSize: 8, generator: SeededGenerator(seed: 10),
                                        progress: .silent)
            return (flatState(model), history)
        }
        let fused = try run(fused: true), general = try run(fused: false)
        #expect(fused.state == general.state)
        #expect(fused.history.loss == general.history.loss)
        #expect(fused.history.accuracy == general.history.accuracy)
    }
}
