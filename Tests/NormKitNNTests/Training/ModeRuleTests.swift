// Which mode a model is in outside fit: Keras' rule for a Keras-style
// Sequential(inputShape:) (inference, so model(x) is predict(x)), PyTorch's for
// everything else (training until eval()), and fit / trainOnBatch training in
// .training and handing back the mode they found, module by module.

@testable import NormKitCore
@testable import NormKitNN
import Testing

/// Keras' seed-program shape on three-class data: Dense → BN → ReLU (→ Dropout)
/// → Dense, built from the input shape, with explicit generators. With dropout,
/// `fit` and `trainOnBatch` take the autodiff step; without, the fused one.
private func kerasStyleModel(seed: UInt64, dropout: Bool = false) -> (Sequential, BatchNorm) {
    let batchNorm = BatchNormalization()
    let model = Sequential(inputShape: [5]) {
        Linear(outFeatures: 8, generator: SeededGenerator(seed: seed))
        batchNorm
        ReLU()
        if dropout { Dropout(0.3, generator: SeededGenerator(seed: seed + 1)) }
        Linear(outFeatures: 3, generator: SeededGenerator(seed: seed + 2))
    }
    return (model, batchNorm)
}

/// The running mean, running variance and batch count of `batchNorm`, flattened.
private func runningState(_ batchNorm: BatchNorm) -> [Float] {
    (batchNorm.runningMean?.scalars ?? []) + (batchNorm.runningVariance?.scalars ?? []) + [Float(batchNorm.numBatchesTracked)]
}

private func modes(_ model: Module) -> [Mode] { model.namedModules().map(\.1.mode) }

@Suite("Mode rule: Keras-style models infer outside fit, PyTorch-style ones keep their mode")
struct ModeRuleTests {
    let data = threeClassData(seed: 21)

    @Test("Sequential(inputShape:) starts in inference; Sequential { } and Module subclasses start in training")
    func startingModes() {
        let (keras, _) = kerasStyleModel(seed: 1, dropout: true)
        #expect(modes(keras).allSatisfy { $0 == .inference })
        #expect(modes(Sequential { makeLinear(5, 3, seed: 2); BatchNorm1d(3) }).allSatisfy { $0 == .training })
        #expect(modes(SeedMLP(inputFeatures: 5, hiddenFeatures: 4, classes: 3)).allSatisfy { $0 == .training })
        #expect(keras.summary().hasPrefix("Sequential (mode: inference)"))
    }

    @Test("Keras-style: after fit, model(x) equals predict(x) and leaves the running statistics alone (fused step, and with dropout)",
          arguments: [false, true])
    func kerasStyleCallAfterFitInfers(dropout: Bool) throws {
        let (model, batchNorm) = kerasStyleModel(seed: 30, dropout: dropout)
        model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
        let before = runningState(batchNorm)
        try model.fit(x: data.x, y: data.y, epochs: 2, batchSize: 8, generator: SeededGenerator(seed: 31), progress: .silent)
        let trained = runningState(batchNorm)
        #expect(trained != before, "fit trained in .training: the running statistics moved")
        #expect(modes(model).allSatisfy { $0 == .inference }, "fit handed the model back in inference")

        let called = try Autodiff.withoutRecording { try model(data.x) }
        let calledAgain = try Autodiff.withoutRecording { try model(data.x) }
        #expect(runningState(batchNorm) == trained, "model(x) used the running statistics without updating them")
        #expect(called.scalars == (try model.predict(data.x)).scalars)
        #expect(calledAgain.scalars == called.scalars, "dropout is off")
    }

    @Test("Keras-style: after trainOnBatch, model(x) equals predict(x); the step trained as on a training-mode twin",
          arguments: [true, false])
    func kerasStyleCallAfterTrainOnBatchInfers(fused: Bool) throws {
        let (keras, kerasNorm) = kerasStyleModel(seed: 40)
        let (twin, twinNorm) = kerasStyleModel(seed: 40)
        twin.train()
        for model in [keras, twin] {
            model.allowsFusedTrainingStep = fused
            model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss(), metrics: [.accuracy])
        }
        for start in stride(from: 0, to: 40, by: 8) {
            let x = Tensor(Array(data.x.scalars[start * 5..<(start + 8) * 5]), shape: [8, 5])
            let y = Array(data.y[start..<start + 8])
            let result = try keras.trainOnBatch(x: x, y: y), twinResult = try twin.trainOnBatch(x: x, y: y)
            #expect(result.loss == twinResult.loss && result.accuracy == twinResult.accuracy)
            #expect(modes(keras).allSatisfy { $0 == .inference } && modes(twin).allSatisfy { $0 == .training })
        }
        #expect((keras.batchTraining?.fused != nil) == fused, "the path under test is taken")
        #expect(keras.parameters().map(\.value.scalars) == twin.parameters().map(\.value.scalars))
        #expect(runningState(kerasNorm) == runningState(twinNorm))

        let trained = runningState(kerasNorm)
        let called = try Autodiff.withoutRecording { try keras(data.x) }
        #expect(runningState(kerasNorm) == trained)
        #expect(called.scalars == (try keras.predict(data.x)).scalars)
    }

    @Test("a Keras-style model's steady-state trainOnBatch still allocates no tensor storage")
    func kerasStyleTrainOnBatchAllocatesNothing() throws {
        let batchNorm = BatchNormalization()
        let model = Sequential(inputShape: [5]) {
            Linear(outFeatures: 8, generator: SeededGenerator(seed: 50)); batchNorm; ReLU()
            Linear(outFeatures: 3, generator: SeededGenerator(seed: 51))
        }
        model.compile(optimizer: Adam(learningRate: 0.01), loss: CrossEntropyLoss())
        let x = Tensor(Array(data.x.scalars[0..<40]), shape: [8, 5]), y = Array(data.y[0..<8])
        try model.trainOnBatch(x: x, y: y)
        try model.trainOnBatch(x: x, y: y)
        let allocations = try countingTensorAllocations {
            for _ in 0..<3 { try model.trainOnBatch(x: x, y: y) }
        }
        #expect(model.batchTraining?.fused != nil)
        #expect(allocations == 0)
        #expect(modes(model).allSatisfy { $0 == .inference })
    }

    @Test("PyTorch-style: fit leaves a training model in training, so model(x) uses batch statistics and updates them")
    func pyTorchStyleStaysInTraining() throws {
        let batchNorm = BatchNorm1d(8)
        let model = Sequential { makeLinear(5, 8, seed: 60); batchNorm; ReLU(); makeLinear(8, 3, seed: 61) }
        model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
        try model.fit(x: data.x, y: data.y, epochs: 1, batchSize: 8, generator: SeededGenerator(seed: 62), progress: .silent)
        #expect(modes(model).allSatisfy { $0 == .training })
        try model.trainOnBatch(x: data.x, y: data.y)
        #expect(modes(model).allSatisfy { $0 == .training })

        let trained = runningState(batchNorm)
        let called = try Autodiff.withoutRecording { try model(data.x) }
        #expect(runningState(batchNorm) != trained, "training mode: the call updated the running statistics")
        #expect(called.scalars != (try model.predict(data.x)).scalars)
    }

    @Test("fit and trainOnBatch train every module, then restore each module's own mode")
    func mixedModesAreRestored() throws {
        let probe = ModeProbe()
        let model = Sequential { makeLinear(5, 8, seed: 70); BatchNorm1d(8); probe; ReLU(); makeLinear(8, 3, seed: 71) }
        model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
        model.layers[1].setMode(.inference)
        let found = modes(model)
        try model.fit(x: data.x, y: data.y, epochs: 1, batchSize: 16, generator: SeededGenerator(seed: 72), progress: .silent)
        #expect(modes(model) == found)
        try model.trainOnBatch(x: data.x, y: data.y)
        #expect(modes(model) == found)
        #expect(probe.observations.allSatisfy { $0.mode == .training }, "every training step ran in .training")

        model.eval()
        try model.fit(x: data.x, y: data.y, epochs: 1, batchSize: 16, generator: SeededGenerator(seed: 73), progress: .silent)
        #expect(modes(model).allSatisfy { $0 == .inference }, "eval() before fit: inference after it")
    }

    @Test("a fit that throws still restores the mode it found")
    func throwingFitRestores() throws {
        let (model, _) = kerasStyleModel(seed: 80, dropout: true)
        model.compile(optimizer: Adam(), loss: CrossEntropyLoss())
        // Batches of one through batch norm in training throw the layer's error.
        #expect(throws: BatchNormError.self) {
            try model.fit(x: data.x, y: data.y, epochs: 1, batchSize: 1, progress: .silent)
        }
        #expect(modes(model).allSatisfy { $0 == .inference })
        #expect(throws: BatchNormError.self) {
            try model.trainOnBatch(x: Tensor(Array(data.x.scalars[0..<5]), shape: [1, 5]), y: [0])
        }
        #expect(modes(model).allSatisfy { $0 == .inference })
    }
}
