// fit / evaluate / predict on a small separable problem: learning, determinism,
// modes, the graph, running statistics, and the last partial batch.

import Foundation
import NormKitCore
@testable import NormKitNN
import Testing

/// Linear(4, 8) → BatchNorm1d(8) → probe → ReLU → Linear(8, 2), from explicit seeds.
private struct BlobModel {
    let model: Sequential
    let batchNorm: BatchNorm1d
    let probe: ModeProbe

    init(seed: UInt64) {
        let batchNorm = BatchNorm1d(8)
        let probe = ModeProbe()
        model = Sequential {
            makeLinear(4, 8, seed: seed)
            batchNorm
            probe
            ReLU()
            makeLinear(8, 2, seed: seed + 1)
        }
        self.batchNorm = batchNorm
        self.probe = probe
    }

    func compile(learningRate: Float = 0.02) {
        model.compile(optimizer: Adam(learningRate: learningRate), loss: CrossEntropyLoss(), metrics: [.accuracy])
    }

    var runningStatistics: [[Float]] {
        [batchNorm.runningMean?.scalars ?? [], batchNorm.runningVariance?.scalars ?? []]
    }
}

/// Mean cross-entropy of `logits` rows, in Double.
private func referenceLoss(_ logits: Tensor, _ labels: [Int]) -> Double {
    let classes = logits.shape[1]
    let values = doubles(logits)
    var total = 0.0
    for (row, label) in labels.enumerated() {
        let r = values[row * classes..<(row + 1) * classes]
        let top = r.max()!
        total += top + Foundation.log(r.map { Foundation.exp($0 - top) }.reduce(0, +)) - r[row * classes + label]
    }
    return total / Double(labels.count)
}

@Suite("Training loop")
struct TrainingTests {
    let trainingBlobs = gaussianBlobs(count: 256, features: 4, separation: 3, seed: 1)
    let heldOutBlobs = gaussianBlobs(count: 256, features: 4, separation: 3, seed: 2)

    @Test("fit learns two Gaussian blobs and History has one entry per epoch")
    func fitLearnsSeparableProblem() throws {
        let blobs = BlobModel(seed: 10)
        blobs.compile()
        let epochs = 6

        let history = try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: epochs, batchSize: 32,
                                          validationData: heldOutBlobs, generator: SeededGenerator(seed: 11), progress: .silent)

        #expect(history.loss.count == epochs)
        #expect(history.accuracy.count == epochs)
        #expect(history.validationLoss.count == epochs)
        #expect(history.validationAccuracy.count == epochs)
        #expect(history.epochSeconds.count == epochs)
        #expect(history.loss.last! < history.loss.first!, "loss falls: \(history.loss)")
        #expect(history.accuracy.last! >= 0.97, "training accuracy \(history.accuracy)")
        #expect(history.validationAccuracy.last! >= 0.97, "validation accuracy \(history.validationAccuracy)")
        #expect(blobs.batchNorm.numBatchesTracked == epochs * 8, "8 batches of 32 per epoch")
    }

    @Test("History numbers the epochs it trained: 1, 2, … for a fresh run, initialEpoch + 1, … for a resumed one")
    func historyNumbersTheEpochs() throws {
        let blobs = BlobModel(seed: 10)
        blobs.compile()
        let data = TensorDataset(features: heldOutBlobs.x, labels: heldOutBlobs.y)
        let fresh = try blobs.model.fit(data, epochs: 2, batchSize: 64, generator: SeededGenerator(seed: 11),
                                        progress: .silent)
        #expect(fresh.epochs == [1, 2])
        let resumed = try blobs.model.fit(data, epochs: 5, batchSize: 64, generator: SeededGenerator(seed: 11),
                                          progress: .silent, initialEpoch: 2)
        #expect(resumed.epochs == [3, 4, 5] && resumed.loss.count == 3)
    }

    @Test("fit is deterministic: two runs from the same seeds give bitwise identical weights and statistics")
    func fitIsDeterministic() throws {
        func run() throws -> (parameters: [[Float]], statistics: [[Float]], loss: [Double]) {
            let blobs = BlobModel(seed: 20)
            blobs.compile()
            let history = try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: 2, batchSize: 24,
                                              generator: SeededGenerator(seed: 21), progress: .silent)
            return (blobs.model.parameters().map(\.value.scalars), blobs.runningStatistics, history.loss)
        }
        let first = try run(), second = try run()
        #expect(first.parameters == second.parameters)
        #expect(first.statistics == second.statistics)
        #expect(first.loss == second.loss)

        // The generator matters: another shuffle seed trains differently.
        let blobs = BlobModel(seed: 20)
        blobs.compile()
        try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: 2, batchSize: 24,
                            generator: SeededGenerator(seed: 22), progress: .silent)
        #expect(blobs.model.parameters().map(\.value.scalars) != first.parameters)
    }

    @Test("fit runs every forward in training mode with the graph recorded")
    func fitTrainsWithGraph() throws {
        let blobs = BlobModel(seed: 30)
        blobs.compile()
        try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: 1, batchSize: 64,
                            generator: SeededGenerator(seed: 31), progress: .silent)
        #expect(blobs.probe.observations.count == 4)
        #expect(blobs.probe.observations.allSatisfy { $0.mode == .training && $0.recording })
    }

    @Test("evaluate and predict run in inference mode without a graph, leave running statistics unchanged and restore the mode",
          arguments: [Mode.training, Mode.inference])
    func evaluateAndPredictInfer(modeBefore: Mode) throws {
        let blobs = BlobModel(seed: 40)
        blobs.compile()
        try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: 1, batchSize: 32,
                            generator: SeededGenerator(seed: 41), progress: .silent)
        blobs.model.setMode(modeBefore)
        let statistics = blobs.runningStatistics
        let tracked = blobs.batchNorm.numBatchesTracked
        let observedDuringFit = blobs.probe.observations.count
        let data = TensorDataset(features: heldOutBlobs.x, labels: heldOutBlobs.y)

        let evaluation = try blobs.model.evaluate(data, batchSize: 100)
        let predictedFromData = try blobs.model.predict(data, batchSize: 100)
        let predictedFromTensor = try blobs.model.predict(heldOutBlobs.x)

        #expect(blobs.runningStatistics == statistics, "exactly unchanged")
        #expect(blobs.batchNorm.numBatchesTracked == tracked)
        #expect(blobs.model.namedModules().allSatisfy { $0.1.mode == modeBefore }, "mode restored")
        let observed = blobs.probe.observations.dropFirst(observedDuringFit)
        #expect(observed.count == 3 + 3 + 1, "three batches each for evaluate and predict(data), one for predict(x)")
        #expect(observed.allSatisfy { $0.mode == .inference && !$0.recording })
        #expect(predictedFromTensor.gradientNode == nil)
        #expect(predictedFromData.shape == [256, 2])
        expectClose(predictedFromData.scalars, doubles(predictedFromTensor), relative: 1e-5, absolute: 1e-6, "predict(data) vs predict(x)")

        // evaluate reports the compiled loss and the accuracy of the inference outputs.
        expectClose([evaluation.loss], [referenceLoss(predictedFromTensor, heldOutBlobs.y)], relative: 1e-5, "loss")
        let correct = zip(predictedFromTensor.argmax(axis: -1), heldOutBlobs.y).filter { $0.0 == $0.1 }.count
        #expect(evaluation.accuracy == Double(correct) / 256)
    }

    @Test("dropsLastPartialBatch avoids a last batch of one example, which otherwise throws singleValuePerChannel")
    func lastPartialBatch() throws {
        let data = TensorDataset(features: trainingBlobs.x.slice(0..<33), labels: Array(trainingBlobs.y[0..<33]))

        let dropping = BlobModel(seed: 50)
        dropping.compile()
        try dropping.model.fit(data, epochs: 2, batchSize: 32, dropsLastPartialBatch: true,
                               generator: SeededGenerator(seed: 51), progress: .silent)
        #expect(dropping.batchNorm.numBatchesTracked == 2, "one full batch per epoch")

        let keeping = BlobModel(seed: 50)
        keeping.compile()
        let error = try #require(throws: BatchNormError.self) {
            try keeping.model.fit(data, epochs: 1, batchSize: 32, generator: SeededGenerator(seed: 51), progress: .silent)
        }
        #expect(error == .singleValuePerChannel(layer: keeping.batchNorm.description, shape: [1, 8]))
    }

    @Test("fit hands a Keras-style optimizer created without parameters the model's trainable parameters")
    func compileWithoutParameters() throws {
        let blobs = BlobModel(seed: 60)
        let optimizer = SGD(learningRate: 0.1)
        blobs.model.compile(optimizer: optimizer, loss: CrossEntropyLoss())
        let before = blobs.model.parameters().map(\.value.scalars)

        try blobs.model.fit(x: trainingBlobs.x, y: trainingBlobs.y, epochs: 1, batchSize: 64,
                            generator: SeededGenerator(seed: 61), progress: .silent)

        #expect(optimizer.parameters.count == blobs.model.trainableParameters().count)
        #expect(zip(optimizer.parameters, blobs.model.trainableParameters()).allSatisfy { $0 === $1 })
        #expect(blobs.model.parameters().map(\.value.scalars) != before, "the weights moved")
    }

    @Test("evaluate without compile uses cross-entropy from the outputs")
    func evaluateWithoutCompile() throws {
        let model = Sequential { makeLinear(4, 2, seed: 70) }
        let data = TensorDataset(features: heldOutBlobs.x, labels: heldOutBlobs.y)

        let evaluation = try model.evaluate(data)

        expectClose([evaluation.loss], [referenceLoss(try model.predict(heldOutBlobs.x), heldOutBlobs.y)], relative: 1e-5, "loss")
    }
}

@Suite("DataLoader and TensorDataset")
struct DataLoaderTests {
    let features = Tensor((0..<10 * 3).map { Float($0) }, shape: [10, 3])
    let labels = Array(100..<110)

    @Test("one pass visits every example once, rows and labels together, in batches of batchSize")
    func passCoversEveryExampleOnce() {
        let loader = DataLoader(TensorDataset(features: features, labels: labels), batchSize: 4, shuffle: true,
                                generator: SeededGenerator(seed: 1))
        let batches = Array(loader)
        #expect(loader.batchCount == 3)
        #expect(batches.map(\.0.shape) == [[4, 3], [4, 3], [2, 3]])
        let seen = batches.flatMap(\.1)
        #expect(seen.sorted() == labels)
        #expect(seen != labels, "shuffled")
        for (inputs, batchLabels) in batches {
            for (row, label) in batchLabels.enumerated() {
                let example = label - 100
                #expect((0..<3).map { inputs[row, $0] } == (0..<3).map { Float(example * 3 + $0) })
            }
        }
    }

    @Test("dropsLastPartialBatch leaves out the incomplete last batch")
    func dropsPartialBatch() {
        let loader = DataLoader(TensorDataset(features: features, labels: labels), batchSize: 4,
                                dropsLastPartialBatch: true, generator: SeededGenerator(seed: 2))
        #expect(loader.batchCount == 2)
        #expect(Array(loader).map(\.1) == [[100, 101, 102, 103], [104, 105, 106, 107]], "unshuffled order")
    }

    @Test("two loaders with the same seed yield the same batches, and each pass draws a new order")
    func shufflingIsSeeded() {
        let data = TensorDataset(features: features, labels: labels)
        let a = DataLoader(data, batchSize: 3, shuffle: true, generator: SeededGenerator(seed: 5))
        let b = DataLoader(data, batchSize: 3, shuffle: true, generator: SeededGenerator(seed: 5))
        let firstA = Array(a).map(\.1), firstB = Array(b).map(\.1)
        #expect(firstA == firstB)
        #expect(Array(a).map(\.1) != firstA, "the second pass is reshuffled")
    }
}

@Suite("Progress formatting")
struct ProgressFormattingTests {
    @Test("fixed(_:_:) prints a value with the given number of decimals, without Foundation",
          arguments: [(3.14159, 2, "3.14"), (2.999, 2, "3.00"), (-1.25, 1, "-1.3"), (-0.004, 2, "0.00"),
                      (0.05, 3, "0.050"), (12, 0, "12")])
    func fixedDecimals(value: Double, digits: Int, expected: String) {
        #expect(fixed(value, digits) == expected)
    }

    @Test("durations of a minute or more read as minutes and seconds")
    func formatsSeconds() {
        #expect(formatSeconds(42.4) == "42s")
        #expect(formatSeconds(75) == "1m15s")
    }

    @Test("fit and evaluate throw on data that give no batch, instead of 'training' with loss 0")
    func emptyDataThrows() throws {
        let blobs = BlobModel(seed: 30)
        blobs.compile()
        let empty = TensorDataset(features: .zeros([0, 4]), labels: [])
        #expect(throws: FitError.noTrainingBatches(exampleCount: 0, batchSize: 32, dropsLastPartialBatch: false)) {
            try blobs.model.fit(empty, epochs: 1, progress: .silent)
        }
        let blobsOfFive = gaussianBlobs(count: 5, features: 4, separation: 3, seed: 3)
        let few = TensorDataset(features: blobsOfFive.x, labels: blobsOfFive.y)
        let error = #expect(throws: FitError.self) {
            try blobs.model.fit(few, epochs: 1, batchSize: 8, dropsLastPartialBatch: true, progress: .silent)
        }
        #expect(error == .noTrainingBatches(exampleCount: 5, batchSize: 8, dropsLastPartialBatch: true))
        #expect(error?.description == "fit: 5 examples make no full batch of 8, and dropsLastPartialBatch drops the partial one")
        #expect(throws: FitError.noExamplesToEvaluate) { try blobs.model.evaluate(empty) }
        // Nothing was trained, and with no epoch left to run there is nothing to refuse.
        #expect(blobs.runningStatistics == BlobModel(seed: 30).runningStatistics)
        #expect(try blobs.model.fit(empty, epochs: 2, progress: .silent, initialEpoch: 2).epochs.isEmpty)
    }
}
