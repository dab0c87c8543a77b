// Keras' train_on_batch: the same updates as fit over the same batches (bit for
// bit, on the fused step and on the general one), the fused step kept across
// calls and rebuilt when it must be, no tensor allocated in a steady-state call,
// batch-norm statistics that evaluate and predict see, and the input checks.

@testable import NormKitCore
@testable import NormKitNN
import Testing

/// Rows `range` of (N, features) `x` and their labels: the batch `fit` draws without shuffling.
private func batch(_ data: (x: Tensor, y: [Int]), _ range: Range<Int>) -> (x: Tensor, y: [Int]) {
    let width = data.x.shape[1]
    return (Tensor(Array(data.x.scalars[range.lowerBound * width..<range.upperBound * width]),
                   shape: [range.count, width]),
            Array(data.y[range]))
}

/// Every state-dict entry of the model and of its compiled optimizer (Adam's
/// moments and step counts) as Float values, by name.
private func fullState(_ model: Module) -> [String: [Float]] {
    func floats(_ value: StateValue) -> [Float] {
        switch value {
        case .float(let tensor): tensor.scalars
        case .integer(let values, _): values.map(Float.init)
        }
    }
    let names = Dictionary(uniqueKeysWithValues: model.namedParameters().map { (ObjectIdentifier($0.1), $0.0) })
    let optimizerState = model.compiledOptimizer!.stateDict(parameterNames: names)
    return model.stateDict().mapValues(floats)
        .merging(optimizerState.mapValues(floats).map { ("optimizer." + $0.key, $0.value) }) { first, _ in first }
}

/// A batch norm's last published batch statistics, flattened (empty when none).
private func lastStatistics(_ batchNorm: BatchNorm) -> [[Float]] {
    guard let statistics = batchNorm.lastBatchStatistics else { return [] }
    return [statistics.mean, statistics.variance, statistics.inverseStandardDeviation, [Float(statistics.count)]]
        + batchNorm.lastGhostBatchStatistics.map(\.mean)
}

@Suite("trainOnBatch")
struct TrainOnBatchTests {
    @Test("trainOnBatch over fit's batches, in fit's order, ends bitwise where fit does (fused step and fallback)",
          arguments: FusedBatchNormSetup.all)
    func matchesFit(_ setup: FusedBatchNormSetup) throws {
        let data = threeClassData(seed: 9)
        let batches = stride(from: 0, to: 45, by: 8).map { batch(data, $0..<min($0 + 8, 45)) }

        let fitted = setup.build()
        fitted.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss(), metrics: [.accuracy])
        let history = try fitted.fit(x: data.x, y: data.y, epochs: 2, batchSize: 8, shuffle: false, progress: .silent)

        let stepped = setup.build()
        stepped.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss(), metrics: [.accuracy])
        var losses: [Double] = [], accuracies: [Double] = []
        for _ in 0..<2 {
            var lossSum = 0.0, correct = 0
            for (x, y) in batches {
                let result = try stepped.trainOnBatch(x: x, y: y)
                lossSum += result.loss * Double(y.count)
                correct += Int((try #require(result.accuracy) * Double(y.count)).rounded())
            }
            losses.append(lossSum / 45)
            accuracies.append(Double(correct) / 45)
        }

        #expect((stepped.batchTraining?.fused != nil) == setup.takesFusedStep, "the path under test is taken")
        #expect(fullState(stepped) == fullState(fitted))
        #expect(losses == history.loss)
        #expect(accuracies == history.accuracy)
        #expect(stepped.namedModules().allSatisfy { $0.1.mode == .training }, "left in the mode it found (training), as fit leaves it")
        #expect(fitted.namedModules().allSatisfy { $0.1.mode == .training })
    }

    @Test("the softmax-ending seed MLP on probabilities: trainOnBatch and fit end bitwise the same")
    func seedMLPMatchesFit() throws {
        let data = threeClassData(seed: 4)
        func model() -> (Sequential, BatchNorm1d) { chainModel(seed: 40, softmax: true) }
        let (fitted, fittedNorm) = model(), (stepped, steppedNorm) = model()
        for candidate in [fitted, stepped] {
            candidate.compile(optimizer: Adam(learningRate: 0.05), loss: SparseCategoricalCrossentropy())
        }
        let history = try fitted.fit(x: data.x, y: data.y, epochs: 3, batchSize: 16, shuffle: false, progress: .silent)
        var last = BatchTrainingResult(loss: 0)
        for _ in 0..<3 {
            for start in stride(from: 0, to: 45, by: 16) {
                let (x, y) = batch(data, start..<min(start + 16, 45))
                last = try stepped.trainOnBatch(x: x, y: y)
            }
        }
        #expect(stepped.batchTraining?.fused != nil)
        #expect(fullState(stepped) == fullState(fitted))
        // fit publishes the last batch's statistics at the end of each epoch; trainOnBatch after every batch.
        #expect(lastStatistics(steppedNorm) == lastStatistics(fittedNorm))
        #expect(last.accuracy == nil, "no metric compiled, none reported")
        #expect(last.loss.isFinite && last.loss < history.loss.first!)
    }

    @Test("batches that grow and shrink: the fused step is rebuilt only to grow, and trains as the autodiff step does")
    func varyingBatchSizes() throws {
        let data = threeClassData(seed: 12)
        let ranges = [0..<5, 5..<13, 13..<16, 16..<28, 28..<40, 40..<45, 0..<12, 12..<20]
        func run(fused: Bool) throws -> (state: [String: [Float]], statistics: [[Float]], capacities: [Int?]) {
            let (model, batchNorm) = chainModel(seed: 120)
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
            var capacities: [Int?] = []
            for range in ranges {
                let (x, y) = batch(data, range)
                try model.trainOnBatch(x: x, y: y)
                capacities.append(model.batchTraining?.fused?.capacity)
            }
            return (fullState(model), lastStatistics(batchNorm), capacities)
        }
        let fused = try run(fused: true), general = try run(fused: false)
        #expect(fused.capacities == [5, 8, 8, 12, 12, 12, 12, 12])
        #expect(general.capacities.allSatisfy { $0 == nil })
        #expect(fused.state == general.state)
        #expect(fused.statistics == general.statistics)
    }

    @Test("the fused step is kept across calls, and replaced after compile, a changed example shape or changed layers")
    func keepsAndRebuildsTheFusedStep() throws {
        let data = threeClassData(seed: 13)
        let (model, batchNorm) = chainModel(seed: 130)
        model.compile(optimizer: Adam(learningRate: 0.01), loss: CrossEntropyLoss())
        let (x, y) = batch(data, 0..<8)
        try model.trainOnBatch(x: x, y: y)
        let first = try #require(model.batchTraining?.fused)
        try model.trainOnBatch(x: x, y: y)
        try model.trainOnBatch(x: batch(data, 8..<14).x, y: batch(data, 8..<14).y)
        #expect(model.batchTraining?.fused === first, "same batch size or smaller: same step")

        model.compile(optimizer: model.compiledOptimizer!, loss: SparseCategoricalCrossentropy(fromLogits: true))
        #expect(model.batchTraining == nil)
        try model.trainOnBatch(x: x, y: y)
        let recompiled = try #require(model.batchTraining?.fused)
        #expect(recompiled !== first)

        // A parameter made non-trainable: the kept step no longer matches the layers; a new one leaves it alone.
        let linear = try #require(model.layers[0] as? Linear)
        let bias = try #require(linear.bias), weight = try #require(linear.weight)
        bias.isTrainable = false
        var biasBefore = bias.value.scalars, weightBefore = weight.value.scalars
        try model.trainOnBatch(x: x, y: y)
        let retrained = try #require(model.batchTraining?.fused)
        #expect(retrained !== recompiled)
        #expect(bias.value.scalars == biasBefore && weight.value.scalars != weightBefore)
        bias.isTrainable = true

        // A frozen batch norm: the general step trains the rest, the running statistics stay.
        batchNorm.freeze()
        let tracked = batchNorm.numBatchesTracked
        (biasBefore, weightBefore) = (bias.value.scalars, weight.value.scalars)
        try model.trainOnBatch(x: x, y: y)
        #expect(model.batchTraining?.fused == nil, "a frozen batch norm is the general step's")
        #expect(batchNorm.numBatchesTracked == tracked)
        #expect(bias.value.scalars != biasBefore && weight.value.scalars != weightBefore)
        batchNorm.unfreeze()
        try model.trainOnBatch(x: x, y: y)
        #expect(model.batchTraining?.fused != nil, "and back to the fused step once unfrozen")
        #expect(batchNorm.numBatchesTracked == tracked + 1)

        // Another example shape with the same size: a step for that shape.
        let flattening = Sequential { Flatten(); makeLinear(6, 3, seed: 131) }
        flattening.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        let labels = [0, 1, 2, 0]
        try flattening.trainOnBatch(x: Tensor(repeating: 0.5, shape: [4, 2, 3]), y: labels)
        let wide = try #require(flattening.batchTraining?.fused)
        try flattening.trainOnBatch(x: Tensor(repeating: 0.5, shape: [4, 3, 2]), y: labels)
        let tall = try #require(flattening.batchTraining?.fused)
        try flattening.trainOnBatch(x: Tensor(repeating: 0.5, shape: [4, 3, 2]), y: labels)
        #expect(tall !== wide && flattening.batchTraining?.fused === tall)
        #expect(flattening.batchTraining?.featureShape == [3, 2])
    }

    @Test("a steady-state trainOnBatch allocates no tensor storage; the fallback allocates dozens")
    func steadyStateAllocatesNoTensors() throws {
        let data = threeClassData(seed: 14)
        let (model, batchNorm) = chainModel(seed: 140, softmax: true)
        model.compile(optimizer: Adam(learningRate: 0.01), loss: SparseCategoricalCrossentropy(), metrics: [.accuracy])
        let batches = (0..<5).map { batch(data, ($0 * 8)..<($0 * 8 + 8)) }
        for (x, y) in batches.prefix(2) { try model.trainOnBatch(x: x, y: y) }
        // Where the published statistics live: copied in place, not reallocated per call (the arrays
        // are not tensors, so the counter below does not see them).
        func statisticsStorage() -> [UnsafePointer<Float>?] {
            let last = batchNorm.lastBatchStatistics!, ghost = batchNorm.lastGhostBatchStatistics[0]
            return [last.mean, last.variance, last.inverseStandardDeviation, ghost.mean, ghost.variance,
                    ghost.inverseStandardDeviation].map { $0.withUnsafeBufferPointer(\.baseAddress) }
        }
        // A copy of the values, not the arrays themselves: holding those would make the next publish copy them.
        let storage = statisticsStorage(), published = lastStatistics(batchNorm).map { $0.map { $0 } }
        var losses: [Double] = []
        losses.reserveCapacity(batches.count)
        let allocations = try countingTensorAllocations {
            for (x, y) in batches { losses.append(try model.trainOnBatch(x: x, y: y).loss) }
        }
        #expect(allocations == 0)
        #expect(losses.count == batches.count && losses.allSatisfy(\.isFinite))
        #expect(statisticsStorage() == storage)
        #expect(lastStatistics(batchNorm) != published, "…and the values there are the new batch's")

        model.allowsFusedTrainingStep = false
        let general = try countingTensorAllocations { try model.trainOnBatch(x: batches[0].x, y: batches[0].y) }
        #expect(general > 10)
    }

    @Test("evaluate and predict after trainOnBatch see its running statistics, and lastBatchStatistics is the last batch's",
          arguments: [true, false])
    func inferenceSeesTheStatistics(evalBetweenCalls: Bool) throws {
        let data = threeClassData(seed: 15)
        let dataset = TensorDataset(features: data.x, labels: data.y)
        func model(fused: Bool) -> (Sequential, BatchNorm1d) {
            let (model, batchNorm) = chainModel(seed: 150)
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
            return (model, batchNorm)
        }
        let (fused, fusedNorm) = model(fused: true), (general, generalNorm) = model(fused: false)
        var previous: [Float] = []
        for start in [0, 8, 16, 24, 32] {
            let (x, y) = batch(data, start..<start + 8)
            try fused.trainOnBatch(x: x, y: y)
            try general.trainOnBatch(x: x, y: y)
            // The autodiff step's forward sets these itself: the fused step must have published the same.
            #expect(lastStatistics(fusedNorm) == lastStatistics(generalNorm))
            #expect(fusedNorm.runningMean!.scalars == generalNorm.runningMean!.scalars)
            #expect(fusedNorm.numBatchesTracked == generalNorm.numBatchesTracked)

            let predicted = try fused.predict(data.x).scalars, reference = try general.predict(data.x).scalars
            #expect(predicted == reference)
            #expect(predicted != previous, "each step moves the weights and the running statistics")
            previous = predicted
            let evaluation = try fused.evaluate(dataset, batchSize: 16)
            let referenceEvaluation = try general.evaluate(dataset, batchSize: 16)
            #expect(evaluation.loss == referenceEvaluation.loss && evaluation.accuracy == referenceEvaluation.accuracy)
            if evalBetweenCalls { fused.eval(); general.eval() }
        }
        #expect(fused.batchTraining?.fused != nil)
        #expect(fusedNorm.numBatchesTracked == 5)
    }

    @Test("a model trained with trainOnBatch is freed once released: what it keeps holds no reference back to it")
    func keptStateMakesNoCycle() throws {
        weak var released: Sequential?
        try {
            let (model, _) = chainModel(seed: 170)
            model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
            let data = threeClassData(seed: 17)
            try model.trainOnBatch(x: batch(data, 0..<8).x, y: batch(data, 0..<8).y)
            #expect(model.batchTraining?.fused != nil)
            released = model
        }()
        #expect(released == nil)
    }

    @Test("a batch of one through batch norm throws the layer's error, as fit does")
    func singleExampleThrows() throws {
        let data = threeClassData(seed: 16)
        let (model, _) = chainModel(seed: 160)
        model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        #expect(throws: BatchNormError.self) { try model.trainOnBatch(x: batch(data, 0..<1).x, y: [0]) }
    }

    @Test("a label outside the classes throws before anything changes, on the fused step and on the fallback")
    func labelOutOfRangeThrows() throws {
        // Fused: Linear → ReLU → Linear; the weights and optimizer state must not move.
        let fusedModel = Sequential { makeLinear(5, 4, seed: 1); ReLU(); makeLinear(4, 3, seed: 2) }
        fusedModel.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        func weights() -> [[Float]] { fusedModel.trainableParameters().map(\.value.scalars) }
        let before = weights()
        #expect(throws: FitError.labelOutOfRange(operation: "trainOnBatch", label: 3, classes: 3)) {
            try fusedModel.trainOnBatch(x: Tensor.zeros([4, 5]), y: [0, 1, 3, 2])
        }
        // A label that only wraps into range as the fused step's Int32 is refused too.
        #expect(throws: FitError.labelOutOfRange(operation: "trainOnBatch", label: 1 << 32, classes: 3)) {
            try fusedModel.trainOnBatch(x: Tensor.zeros([2, 5]), y: [1, 1 << 32])
        }
        #expect(weights() == before)
        // Fallback (Sigmoid is not fused): the check runs on the forward's output, before the loss.
        let fallbackModel = Sequential { makeLinear(5, 3, seed: 1); Sigmoid() }
        fallbackModel.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        let error = #expect(throws: FitError.self) {
            try fallbackModel.trainOnBatch(x: Tensor.zeros([4, 5]), y: [0, 1, -1, 2])
        }
        #expect(error?.description == "trainOnBatch: label -1 is outside the model's classes 0..<3")
    }

    @Test("fit and evaluate throw on a label outside the classes instead of stopping the process")
    func fitAndEvaluateThrowOnLabelOutOfRange() throws {
        let data = threeClassData(seed: 17)
        var labels = data.y
        labels[7] = 5
        let (model, _) = chainModel(seed: 170)
        model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        let dataset = TensorDataset(features: data.x, labels: labels)
        #expect(throws: FitError.labelOutOfRange(operation: "fit", label: 5, classes: 3)) {
            try model.fit(dataset, epochs: 1, batchSize: 8, progress: .silent)
        }
        #expect(throws: FitError.labelOutOfRange(operation: "evaluate", label: 5, classes: 3)) {
            try model.evaluate(dataset)
        }
    }
}

@Suite("trainOnBatch: programmer errors")
struct TrainOnBatchExitTests {
    @Test("x and y with different example counts stop the process, naming both")
    func countMismatchTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let model = Sequential { makeLinear(5, 3, seed: 1) }
            model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
            try model.trainOnBatch(x: Tensor.zeros([4, 5]), y: [0, 1, 2])
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("trainOnBatch: x [4, 5] and y (3 labels) must hold the same number (≥ 1) of examples"),
                "\(message)")
    }

    @Test("examples of the wrong size stop the process in the first layer, naming both shapes")
    func featureMismatchTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let model = Sequential { makeLinear(5, 4, seed: 1); ReLU(); makeLinear(4, 3, seed: 2) }
            model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
            try model.trainOnBatch(x: Tensor.zeros([4, 6]), y: [0, 1, 2, 0])
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("Linear(5 → 4) got input shape [4, 6]"), "\(message)")
    }

    @Test("trainOnBatch before compile stops the process and says what to call")
    func uncompiledTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            try Sequential { makeLinear(5, 3, seed: 1) }.trainOnBatch(x: Tensor.zeros([2, 5]), y: [0, 1])
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("trainOnBatch: call compile(optimizer:loss:metrics:) first"), "\(message)")
    }
}
