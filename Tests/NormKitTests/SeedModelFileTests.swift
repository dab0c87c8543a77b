// SeedModel: what `normkit evaluate --model FILE` and `normkit predict --model FILE` load and run.

import Foundation
import NormKit
import Testing

@Suite("Seed model files")
struct SeedModelFileTests {
    @Test("a CNN saved as `train --model cnn --save` does is recognised, loads exactly, and predicts and evaluates on NCHW images")
    func cnnFile() throws {
        let images = randomImages(count: 16, rows: 4, columns: 4, seed: 1)
        let trained = SeedCNN(imageSize: 4, generator: SeededGenerator(seed: 2))
        trained.compile(optimizer: Adam(), loss: .crossEntropy)
        try trained.fit(images.channelsFirst, epochs: 1, batchSize: 8, generator: SeededGenerator(seed: 3), progress: .silent)
        try withScratchFile { path in
            try trained.save(to: path)
            let loaded = try SeedModel(contentsOf: path)
            guard case .cnn(let model) = loaded else { Issue.record("read as \(loaded.kindName)"); return }
            #expect(loaded.kindName == "cnn" && model.mode == .inference)
            #expect(isBitwiseEqual(model.stateDict(), trained.stateDict()), "weights and running statistics as trained")
            #expect(model.bn1?.numBatchesTracked == 2)
            #expect(loaded.exampleShape == [1, 4, 4])

            let expectedClasses = try trained.predict(images.channelsFirst).argmax(axis: -1)
            #expect(try loaded.predictedClasses(images) == expectedClasses)
            let expected = try trained.evaluate(images.channelsFirst)  // cross-entropy on logits, inference mode
            let evaluation = try loaded.evaluate(images)
            #expect(evaluation.loss == expected.loss && evaluation.accuracy == expected.accuracy)
            #expect(evaluation.loss > 0 && evaluation.loss.isFinite)
        }
    }

    @Test("an MLP file is still the MLP: flat rows in, cross-entropy on its probabilities")
    func mlpFile() throws {
        let images = randomImages(count: 16, rows: 6, columns: 6, seed: 4)
        let trained = SeedMLP(inputFeatures: 36, hiddenFeatures: 8, classes: 10)
        trained.compile(optimizer: Adam(), loss: .sparseCategoricalCrossentropy)
        try trained.fit(images, epochs: 1, batchSize: 8, generator: SeededGenerator(seed: 5), progress: .silent)
        try withScratchFile { path in
            try trained.save(to: path)
            let loaded = try SeedModel(contentsOf: path)
            guard case .mlp = loaded else { Issue.record("read as \(loaded.kindName)"); return }
            #expect(loaded.exampleShape == [36])
            #expect(try loaded.predictedClasses(images) == trained.predict(images).argmax(axis: -1))
            let expected = try trained.evaluate(images)
            let evaluation = try loaded.evaluate(images)
            #expect(evaluation.loss == expected.loss && evaluation.accuracy == expected.accuracy)
        }
    }

    @Test("images of another size are refused with both sizes named; sizes that pool alike are taken")
    func imageSizes() throws {
        let cnn = SeedModel.cnn(SeedCNN(imageSize: 8, generator: SeededGenerator(seed: 6)))
        let error = try #require(throws: SeedModelError.self) { try cnn.inputs(randomImages(count: 2, rows: 12, columns: 12, seed: 7)) }
        #expect(error.description.contains("8×8") && error.description.contains("12×12"))
        // 11×11 pools to 2×2 as 8×8 does, so the network computes on it (as PyTorch's would).
        let pooledAlike = try cnn.inputs(randomImages(count: 2, rows: 11, columns: 11, seed: 8))
        #expect(pooledAlike.featureShape == [1, 11, 11])
        #expect(try cnn.predictedClasses(randomImages(count: 3, rows: 11, columns: 11, seed: 8)).count == 3)

        let mlp = SeedModel.mlp(SeedMLP(inputFeatures: 64, hiddenFeatures: 4, classes: 10))
        #expect(try mlp.inputs(randomImages(count: 2, rows: 8, columns: 8, seed: 9)).featureShape == [64])
        #expect(throws: SeedModelError.self) { try mlp.inputs(randomImages(count: 2, rows: 9, columns: 9, seed: 9)) }
    }

    @Test("labels beyond the model's classes are refused with both named, not a stopped process")
    func labelsOutOfRange() throws {
        let model = SeedModel.mlp(SeedMLP(inputFeatures: 16, hiddenFeatures: 4, classes: 10))
        #expect(model.classCount == 10)
        let images = randomImages(count: 4, rows: 4, columns: 4, seed: 10)
        let relabelled = LabeledImages(pixels: images.pixels, labels: [0, 1, 200, 3], count: 4, rows: 4, columns: 4)
        let error = try #require(throws: SeedModelError.self) { try model.evaluate(relabelled) }
        #expect(error.description.contains("0..<10") && error.description.contains("200"))
        #expect(try model.evaluate(images).accuracy >= 0, "labels 0…9 still evaluate")
    }

    @Test("a file that holds neither seed model is refused, naming the file and what did not fit")
    func otherModels() throws {
        try withScratchFile { path in
            // The CNN's layer types at other widths (the parity test's network): 0.weight is (4, 1, 3, 3).
            let narrow = Sequential {
                Conv2D(1, 4, kernelSize: 3, padding: 1)
                BatchNorm2d(4)
                ReLU()
                MaxPool2D(2)
                Flatten()
                Linear(4 * 14 * 14, 10)
            }
            try narrow.save(to: path)
            let error = try #require(throws: SeedModelError.self) { try SeedModel(contentsOf: path) }
            #expect(error.description.hasPrefix(path) && error.description.contains("0.weight"))

            try SafetensorsFile(["weight": .float(.zeros([2, 3])), "bias": .float(.zeros([2]))]).write(to: path)
            let other = try #require(throws: SeedModelError.self) { try SeedModel(contentsOf: path) }
            #expect(other.description.contains("not a seed model") && other.description.contains("fc1.weight"))
        }
    }
}

/// `count` random `rows`×`columns` images with labels 0, 1, …, 9, 0, … from `seed`.
func randomImages(count: Int, rows: Int, columns: Int, seed: UInt64) -> LabeledImages {
    var generator = SeededGenerator(seed: seed)
    let pixels = (0..<count * rows * columns).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    return LabeledImages(pixels: pixels, labels: (0..<count).map { UInt8($0 % 10) }, count: count, rows: rows, columns: columns)
}

/// Whether two state dicts hold the same keys with bit-identical values.
func isBitwiseEqual(_ a: StateDict, _ b: StateDict) -> Bool {
    a.count == b.count && a.allSatisfy { key, value in b[key].map { value.isBitwiseEqual(to: $0) } ?? false }
}

/// A path in a fresh temporary directory, removed when `body` returns.
func withScratchFile<R>(_ body: (String) throws -> R) throws -> R {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("normkit-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try body("\(directory)/model.safetensors")
}
