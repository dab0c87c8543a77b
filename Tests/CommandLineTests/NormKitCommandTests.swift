import Foundation
import NormKit
import Testing

/// The `normkit` executable run as a process, the way users and scripts run it:
/// exit status, the `key=value` lines scripts read, the files it writes, and the
/// error messages for bad input.
///
/// Each test trains on a small IDX copy of the embedded slice (400 training and
/// 200 test images written to a temporary directory), so a debug build runs the
/// whole suite in seconds.
@Suite(.serialized) struct NormKitCommandTests {
    let workspace: TemporaryDirectory
    let dataDirectory: String

    init() throws {
        workspace = try TemporaryDirectory()
        dataDirectory = workspace.path("data")
        try SmallIDXDataset.write(trainCount: 400, testCount: 200, to: dataDirectory)
    }

    @Test func trainSavesAModelThatEvaluateAndPredictReproduce() throws {
        let model = workspace.path("mlp.safetensors"), plot = workspace.path("curves.svg")
        let trained = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "2", "--seed", "3",
                                              "--save", model, "--plot", plot, "--threads", "1"])
        #expect(trained.status == 0, "stderr: \(trained.standardError)")
        let trainedAccuracy = try #require(trained.value(of: "test_accuracy"))
        #expect(trained.standardOutput.split(separator: "\n").last?.hasPrefix("test_accuracy=") == true)
        // 10 classes, 400 images, 2 epochs: far above the 0.1 of guessing.
        #expect(trainedAccuracy > 0.4 && trainedAccuracy <= 1)
        #expect(FileManager.default.fileExists(atPath: model))
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") || svg.hasPrefix("<?xml"))

        // The saved model, evaluated on the same test images, gives the same numbers.
        let evaluated = try NormKitProcess.run(["evaluate", "--model", model, "--data", dataDirectory])
        #expect(evaluated.status == 0, "stderr: \(evaluated.standardError)")
        #expect(evaluated.value(of: "test_accuracy") == trainedAccuracy)
        #expect(evaluated.value(of: "test_loss") == trained.value(of: "test_loss"))

        // predict: one class per image, in file order, agreeing with evaluate's accuracy.
        let predicted = try NormKitProcess.run(["predict", "--model", model,
                                                "--images", "\(dataDirectory)/t10k-images-idx3-ubyte"])
        #expect(predicted.status == 0, "stderr: \(predicted.standardError)")
        let classes = predicted.standardOutput.split(separator: "\n").compactMap { Int($0) }
        let labels = try SmallIDXDataset.testLabels(count: 200)
        try #require(classes.count == 200)
        let correct = zip(classes, labels).filter { $0 == Int($1) }.count
        #expect(String(format: "%.4f", Double(correct) / 200) == String(format: "%.4f", trainedAccuracy))
    }

    @Test func trainingIsReproducibleFromTheSeed() throws {
        let arguments = ["train", "--data", dataDirectory, "--epochs", "1", "--seed", "7", "--threads", "1"]
        let first = try NormKitProcess.run(arguments), second = try NormKitProcess.run(arguments)
        #expect(first.status == 0 && second.status == 0)
        #expect(first.value(of: "test_loss") != nil)
        #expect(first.value(of: "test_loss") == second.value(of: "test_loss"))
    }

    @Test func exportONNXWritesAProtobufModel() throws {
        let model = workspace.path("for-onnx.safetensors"), onnx = workspace.path("model.onnx")
        let trained = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1", "--save", model])
        try #require(trained.status == 0, "stderr: \(trained.standardError)")
        let exported = try NormKitProcess.run(["export-onnx", "--model", model, "--output", onnx])
        #expect(exported.status == 0, "stderr: \(exported.standardError)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: onnx))
        // The seed MLP's 784·64 + 64·10 weights as float32, plus the graph.
        #expect(bytes.count > (784 * 64 + 64 * 10) * 4)
        #expect(bytes.first == 0x08)   // field 1 (ir_version), varint: every ONNX model starts so
    }

    @Test func aMissingModelFileIsNamedInTheError() throws {
        let missing = workspace.path("no-such-model.safetensors")
        let result = try NormKitProcess.run(["evaluate", "--model", missing, "--data", dataDirectory])
        #expect(result.status != 0)
        #expect(result.standardError.contains(missing))
    }

    @Test func aTruncatedImagesFileIsNamedWithItsSizes() throws {
        let broken = workspace.path("broken")
        try SmallIDXDataset.write(trainCount: 50, testCount: 20, to: broken)
        let images = "\(broken)/train-images-idx3-ubyte"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: images))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: images))
        let result = try NormKitProcess.run(["train", "--data", broken, "--epochs", "1"])
        #expect(result.status != 0)
        #expect(result.standardError.contains(images))
        // expected vs found: 50 images of 28·28 bytes, 100 bytes short.
        #expect(result.standardError.contains("\(50 * 784)"))
        #expect(result.standardError.contains("\(50 * 784 - 100)"))
    }

    @Test func testLabelsBeyondTheTrainingLabelsAreScoredAndForeignLabelsRefused() throws {
        // Test label 12 where training has 0…9: the model must score it, not stop in the first validation.
        let wider = workspace.path("wider")
        try SmallIDXDataset.write(trainCount: 100, testCount: 20, to: wider)
        let labels = "\(wider)/t10k-labels-idx1-ubyte"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: labels))
        bytes[8] = 12   // the first label, after the 8-byte header
        try bytes.write(to: URL(fileURLWithPath: labels))
        let model = workspace.path("wider.safetensors")
        let trained = try NormKitProcess.run(["train", "--data", wider, "--epochs", "1", "--save", model, "--threads", "1"])
        #expect(trained.status == 0, "stderr: \(trained.standardError)")
        #expect(trained.standardOutput.contains("Linear(64 → 13)"))

        // A 10-class model evaluated on labels up to 200: an error naming both, and an exit (1, or
        // ArgumentParser's 64 for the model file's errors), not a trap's signal.
        let tenClasses = workspace.path("ten.safetensors")
        try #require(try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1", "--save", tenClasses]).status == 0)
        bytes[8] = 200
        try bytes.write(to: URL(fileURLWithPath: labels))
        let evaluated = try NormKitProcess.run(["evaluate", "--model", tenClasses, "--data", wider])
        #expect([1, 64].contains(evaluated.status), "stderr: \(evaluated.standardError)")
        #expect(evaluated.standardError.contains("0..<10") && evaluated.standardError.contains("200"))
    }

    @Test(arguments: [
        (["train", "--epochs", "-1"], "--epochs must be at least 1, got -1"),
        (["train", "--threads", "-2"], "--threads must be at least 1, got -2"),
        (["train", "--batch-size", "-32"], "got -32"),
        (["train", "--learning-rate", "-0.1"], "--learning-rate must be positive, got -0.1"),
        (["predict", "--model", "m.safetensors", "--images", "x", "--count", "-5"], "--count must be at least 1, got -5"),
    ])
    func negativeValuesReachTheValidation(arguments: [String], message: String) throws {
        // Not "Missing value for '--epochs'", as a value starting with a dash was parsed before.
        let result = try NormKitProcess.run(arguments)
        #expect(result.status != 0)
        #expect(result.standardError.contains(message), "stderr: \(result.standardError)")
    }

    @Test func anUnusableThreadCountInTheEnvironmentIsRefusedByName() throws {
        for value in ["0", "two", "-1"] {
            let result = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1"],
                                                environment: ["NORMKIT_THREADS": value])
            #expect(result.status != 0)
            #expect(result.standardError.contains("NORMKIT_THREADS") && result.standardError.contains("'\(value)'"),
                    "stderr: \(result.standardError)")
        }
        // --threads overrides it, and a usable value is taken.
        let overridden = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1", "--threads", "1"],
                                                environment: ["NORMKIT_THREADS": "0"])
        #expect(overridden.status == 0, "stderr: \(overridden.standardError)")
        let usable = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1"],
                                            environment: ["NORMKIT_THREADS": "1"])
        #expect(usable.status == 0 && usable.standardOutput.contains("threads: 1"), "stderr: \(usable.standardError)")
    }

    @Test(arguments: ["--save", "--plot"])
    func anOutputInAMissingDirectoryIsRefusedBeforeTraining(option: String) throws {
        let destination = workspace.path("no-such-directory/out")
        let result = try NormKitProcess.run(["train", "--data", dataDirectory, "--epochs", "1", option, destination])
        #expect(result.status != 0)
        #expect(result.standardError.contains("\(option) \(destination)") && result.standardError.contains("does not exist"),
                "stderr: \(result.standardError)")
        #expect(!result.standardOutput.contains("Epoch 1/1"), "refused before any training")
    }

    @Test func aStudyReportFolderThatCannotBeMadeIsRefusedBeforeTheExperiments() throws {
        let file = workspace.path("a-file")
        try Data([1]).write(to: URL(fileURLWithPath: file))
        let result = try NormKitProcess.run(["study", "--quick", "--data", dataDirectory, "--output", "\(file)/report"])
        #expect(result.status != 0)
        #expect(result.standardError.contains("\(file)/report") && result.standardError.contains("report folder"),
                "stderr: \(result.standardError)")
        #expect(result.standardOutput.isEmpty, "refused before loading data or running anything")
    }

    @Test(arguments: [
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--batch-size", "1"], "--batch-size"),
        (["train", "--resume"], "--checkpoint"),
        (["train", "--threads", "0"], "--threads"),
        (["predict", "--model", "m.safetensors", "--images", "x", "--count", "0"], "--count"),
    ])
    func invalidOptionsAreRefusedByName(arguments: [String], named option: String) throws {
        let result = try NormKitProcess.run(arguments)
        #expect(result.status != 0)
        #expect(result.standardError.contains(option), "stderr: \(result.standardError)")
    }
}

/// Runs the `normkit` executable that `swift test` built beside the test bundle.
enum NormKitProcess {
    struct Result {
        var status: Int32
        var standardOutput: String
        var standardError: String

        /// The number in the last `key=value` line for `key`, as printed.
        func value(of key: String) -> Double? {
            standardOutput.split(separator: "\n").last { $0.hasPrefix("\(key)=") }
                .flatMap { Double($0.dropFirst(key.count + 1)) }
        }
    }

    static var executable: URL {
        // The test bundle runs from the build products directory, where the executable sits too.
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("normkit")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        // Files, not pipes: a child that writes more than a pipe holds cannot stall the test.
        let capture = try TemporaryDirectory()
        let outputPath = capture.path("stdout"), errorPath = capture.path("stderr")
        try Data().write(to: URL(fileURLWithPath: outputPath))
        try Data().write(to: URL(fileURLWithPath: errorPath))
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        try output.close()
        try errors.close()
        return Result(status: process.terminationStatus,
                      standardOutput: try String(contentsOfFile: outputPath, encoding: .utf8),
                      standardError: try String(contentsOfFile: errorPath, encoding: .utf8))
    }
}

/// A prefix of the embedded Fashion-MNIST slice written as plain (uncompressed) IDX files
/// under the names `normkit train --data` looks for.
enum SmallIDXDataset {
    static func write(trainCount: Int, testCount: Int, to directory: String) throws {
        let data = try MNISTDataset.embeddedFashionMNIST()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, images) in [("train", data.train.prefix(trainCount)), ("t10k", data.test.prefix(testCount))] {
            try idx(dimensions: [images.count, images.rows, images.columns], bytes: images.pixels)
                .write(to: URL(fileURLWithPath: "\(directory)/\(name)-images-idx3-ubyte"))
            try idx(dimensions: [images.count], bytes: images.labels)
                .write(to: URL(fileURLWithPath: "\(directory)/\(name)-labels-idx1-ubyte"))
        }
    }

    static func testLabels(count: Int) throws -> [UInt8] {
        try MNISTDataset.embeddedFashionMNIST().test.prefix(count).labels
    }

    /// Magic 0x0000 08 rank, then each dimension as a big-endian UInt32, then the bytes.
    private static func idx(dimensions: [Int], bytes: [UInt8]) -> Data {
        var file = Data([0, 0, 0x08, UInt8(dimensions.count)])
        for dimension in dimensions {
            withUnsafeBytes(of: UInt32(dimension).bigEndian) { file.append(contentsOf: $0) }
        }
        file.append(contentsOf: bytes)
        return file
    }
}

/// A directory removed when the suite's last reference goes away.
final class TemporaryDirectory: Sendable {
    let root: String

    init() throws {
        root = FileManager.default.temporaryDirectory
            .appendingPathComponent("normkit-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { "\(root)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: root) }
}
