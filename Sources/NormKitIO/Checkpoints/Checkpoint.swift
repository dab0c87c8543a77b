import Foundation
import NormKitCore
import NormKitNN

/// Everything a training run needs to continue exactly where it stopped: the
/// model's state, the optimizer's state (keyed by parameter name), the number of
/// finished epochs and both random streams (`GlobalRandom` and the generator
/// that shuffles the epochs).
///
/// On disk it is one safetensors file: `model.<name>` and `optimizer.<name>`
/// tensors (float entries F32, counters I64, so every bit survives), and the
/// epoch and generator states in `__metadata__` as decimal strings.
public struct Checkpoint {
    /// Epochs finished when the checkpoint was taken.
    public var epoch: Int
    public var model: StateDict
    public var optimizer: StateDict
    /// `GlobalRandom.current` at the time.
    public var globalRandom: SeededGenerator
    /// The shuffling generator after `epoch` epochs.
    public var shuffling: SeededGenerator

    static let format = "normkit-checkpoint-1"

    public init(epoch: Int, model: StateDict, optimizer: StateDict, globalRandom: SeededGenerator,
                shuffling: SeededGenerator) {
        self.epoch = epoch
        self.model = model
        self.optimizer = optimizer
        self.globalRandom = globalRandom
        self.shuffling = shuffling
    }

    /// The state of `model`, its compiled optimizer and `GlobalRandom` now, after `epoch` epochs.
    public init(capturing model: Module, optimizer: any Optimizer, epoch: Int, shuffling: SeededGenerator) {
        let names = Dictionary(model.namedParameters().map { (ObjectIdentifier($0.1), $0.0) }, uniquingKeysWith: { a, _ in a })
        self.init(epoch: epoch, model: model.stateDict(), optimizer: optimizer.stateDict(parameterNames: names),
                  globalRandom: GlobalRandom.current, shuffling: shuffling)
    }

    /// Loads the model and optimizer state (strictly: the checkpoint must be of this model
    /// and this kind of optimizer) and, when `restoringGlobalRandom`, moves `GlobalRandom`
    /// to where it was. When either does not fit, it throws and neither has changed.
    public func restore(into model: Module, optimizer: any Optimizer, restoringGlobalRandom: Bool = true) throws {
        let previous = model.stateDict()
        try model.loadStateDict(self.model, strict: true)
        let parameters = Dictionary(model.namedParameters().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        do {
            try optimizer.loadStateDict(self.optimizer, parameters: parameters)
        } catch {
            // The optimizer checks everything before it changes anything; undo the model's load.
            try! model.loadStateDict(previous, strict: true)   // the model's own state always fits it
            throw error
        }
        if restoringGlobalRandom { GlobalRandom.current = globalRandom }
    }

    // MARK: Files

    public var file: SafetensorsFile {
        var tensors: [String: SafetensorsTensor] = [:]
        for (name, value) in model { tensors["model.\(name)"] = SafetensorsTensor(value) }
        for (name, value) in optimizer { tensors["optimizer.\(name)"] = SafetensorsTensor(value) }
        return SafetensorsFile(tensors: tensors, metadata: [
            "format": Checkpoint.format,
            "epoch": String(epoch),
            "global_random_state": Checkpoint.encode(globalRandom),
            "shuffling_random_state": Checkpoint.encode(shuffling),
        ])
    }

    public init(file: SafetensorsFile, path: String) throws(SafetensorsError) {
        func metadata(_ key: String) throws(SafetensorsError) -> String {
            guard let value = file.metadata[key] else { throw .invalidMetadata(path: path, key: key, problem: "missing") }
            return value
        }
        guard try metadata("format") == Checkpoint.format else {
            throw .invalidMetadata(path: path, key: "format",
                                   problem: "expected '\(Checkpoint.format)', found '\(file.metadata["format"]!)'")
        }
        guard let epoch = Int(try metadata("epoch")), epoch >= 0 else {
            throw .invalidMetadata(path: path, key: "epoch", problem: "expected a count ≥ 0, found '\(file.metadata["epoch"]!)'")
        }
        let global = try Checkpoint.decode(try metadata("global_random_state"), key: "global_random_state", path: path)
        let shuffling = try Checkpoint.decode(try metadata("shuffling_random_state"), key: "shuffling_random_state", path: path)
        var model: StateDict = [:], optimizer: StateDict = [:]
        for (name, tensor) in file.tensors {
            if name.hasPrefix("model.") {
                model[String(name.dropFirst(6))] = tensor.stateValue
            } else if name.hasPrefix("optimizer.") {
                optimizer[String(name.dropFirst(10))] = tensor.stateValue
            } else {
                throw .malformedEntry(path: path, tensor: name, problem: "a checkpoint holds only model.* and optimizer.* tensors")
            }
        }
        self.init(epoch: epoch, model: model, optimizer: optimizer, globalRandom: global, shuffling: shuffling)
    }

    public func write(to path: String) throws(SafetensorsError) { try file.write(to: path) }

    public static func read(path: String) throws(SafetensorsError) -> Checkpoint {
        try Checkpoint(file: SafetensorsFile.read(path: path), path: path)
    }

    /// The four state words in decimal, comma-separated.
    private static func encode(_ generator: SeededGenerator) -> String {
        let s = generator.state
        return [s.0, s.1, s.2, s.3].map(String.init).joined(separator: ",")
    }

    private static func decode(_ text: String, key: String, path: String) throws(SafetensorsError) -> SeededGenerator {
        let words = text.split(separator: ",").compactMap { UInt64($0) }
        guard words.count == 4, words.contains(where: { $0 != 0 }) else {
            throw .invalidMetadata(path: path, key: key, problem: "expected 4 comma-separated UInt64 words, not all 0, found '\(text)'")
        }
        var generator = SeededGenerator(seed: 0)
        generator.state = (words[0], words[1], words[2], words[3])
        return generator
    }
}

/// A directory of per-epoch checkpoints, `epoch-0001.safetensors`, `epoch-0002.safetensors`, …
///
/// Each is written atomically, so a crash while saving epoch n leaves epoch
/// n − 1 as the latest complete checkpoint (and at most a stray temporary file,
/// which `latest()` ignores). Earlier checkpoints are kept, as Keras'
/// `ModelCheckpoint` keeps one file per epoch.
public struct CheckpointDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public func filePath(epoch: Int) -> String {
        let digits = String(epoch)
        return "\(path)/epoch-\(String(repeating: "0", count: max(0, 4 - digits.count)))\(digits).safetensors"
    }

    /// Creates the directory (and its parents) if it does not exist.
    ///
    /// `fit(…, checkpoints:)` calls it before the first epoch, so that a directory that
    /// cannot be made stops the run at once rather than after an epoch of training.
    /// - Throws: `SafetensorsError.unreadable` naming the directory and the reason.
    public func create() throws(SafetensorsError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .unreadable(path: path, reason: "cannot create the checkpoint directory: \(error.localizedDescription)")
        }
    }

    /// Creates the directory if needed and writes `checkpoint` as its epoch's file.
    @discardableResult
    public func save(_ checkpoint: Checkpoint) throws -> String {
        try create()
        let file = filePath(epoch: checkpoint.epoch)
        try checkpoint.write(to: file)
        return file
    }

    /// The path of the checkpoint with the highest epoch, or nil if there is none (or no directory).
    ///
    /// Any `epoch-N.safetensors` counts, zero-padded or not (a file copied in by hand as
    /// `epoch-12.safetensors`), and the path returned is the file's own name, not a re-padded one.
    public func latestPath() -> String? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return nil }
        let epochs = names.compactMap { name -> (epoch: Int, name: String)? in
            guard name.hasPrefix("epoch-") && name.hasSuffix(".safetensors"),
                  let epoch = Int(name.dropFirst(6).dropLast(12)) else { return nil }
            return (epoch, name)
        }
        return epochs.max { ($0.epoch, $0.name) < ($1.epoch, $1.name) }.map { "\(path)/\($0.name)" }
    }

    /// The checkpoint with the highest epoch, or nil if there is none.
    public func latest() throws(SafetensorsError) -> Checkpoint? {
        guard let file = latestPath() else { return nil }
        return try Checkpoint.read(path: file)
    }
}
