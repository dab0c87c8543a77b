// Checkpoints: atomic writes that survive a crash mid-save, the checkpoint
// file's content, and a resumed run that ends bit for bit where an
// uninterrupted one does.

import Foundation
import NormKitCore
@testable import NormKitIO
import NormKitNN
import Testing

@Suite("Checkpoints and atomic writes")
struct CheckpointTests {
    @Test("a crash in the middle of replacing a file leaves the old file intact; the next save succeeds")
    func crashMidWriteKeepsOldFile() throws {
        try withScratchDirectory { directory in
            let path = "\(directory)/model.safetensors"
            let old = SafetensorsFile(tensors: ["w": SafetensorsTensor(Tensor([1, 2, 3]))])
            try old.write(to: path)
            let new = SafetensorsFile(tensors: ["w": SafetensorsTensor(Tensor((0..<1000).map(Float.init)))]).encoded()

            #expect(throws: AtomicFileError.self) { try AtomicFile.write(new, to: path, simulatingCrashAfter: new.count / 2) }
            #expect(try SafetensorsFile.read(path: path) == old, "the destination still holds the complete old file")
            let stray = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".tmp-") }
            #expect(stray.count == 1, "the half-written temporary file is what a killed process leaves")
            let strayBytes = try #require(FileManager.default.contents(atPath: "\(directory)/\(stray[0])"))
            #expect(strayBytes.count == new.count / 2)

            try AtomicFile.write(new, to: path)
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == new)
        }
    }

    @Test("a crash while saving epoch 3 leaves epoch 2 as the latest readable checkpoint")
    func crashMidCheckpointKeepsPrevious() throws {
        try withScratchDirectory { directory in
            let checkpoints = CheckpointDirectory(path: "\(directory)/run")
            let model = TinyNet(seed: 1)
            let adam = Adam(model.parameters())
            for epoch in 1...2 {
                try checkpoints.save(Checkpoint(capturing: model, optimizer: adam, epoch: epoch,
                                                shuffling: SeededGenerator(seed: UInt64(epoch))))
            }
            let third = Checkpoint(capturing: model, optimizer: adam, epoch: 3, shuffling: SeededGenerator(seed: 3))
            let bytes = third.file.encoded()
            #expect(throws: AtomicFileError.self) {
                try AtomicFile.write(bytes, to: checkpoints.filePath(epoch: 3), simulatingCrashAfter: bytes.count - 100)
            }
            let latest = try #require(try checkpoints.latest())
            #expect(latest.epoch == 2 && latest.shuffling == SeededGenerator(seed: 2))
            #expect(checkpoints.latestPath() == "\(directory)/run/epoch-0002.safetensors")
        }
    }

    @Test("a checkpoint directory that cannot be made is named in the error, before any epoch trains")
    func uncreatableDirectory() throws {
        try withScratchDirectory { directory in
            let file = "\(directory)/a-file"
            try Data([1]).write(to: URL(fileURLWithPath: file))
            let checkpoints = CheckpointDirectory(path: "\(file)/runs")   // under a regular file
            let error = try #require(throws: SafetensorsError.self) { try checkpoints.create() }
            #expect(error.description.contains("\(file)/runs") && error.description.contains("checkpoint directory"))

            let model = TinyNet(seed: 1)
            model.compile(optimizer: Adam(), loss: .crossEntropy)
            let before = model.stateDict()
            let data = TensorDataset(features: .ones([4, 4]), labels: [0, 1, 0, 1])
            #expect(throws: SafetensorsError.self) {
                try model.fit(data, epochs: 1, batchSize: 2, generator: SeededGenerator(seed: 1), progress: .silent,
                              checkpoints: checkpoints, resume: false)
            }
            #expect(model.stateDict().keys.allSatisfy { before[$0]!.isBitwiseEqual(to: model.stateDict()[$0]!) },
                    "nothing trained")
        }
    }

    @Test("the latest checkpoint is found under its own name, also when the epoch is not zero-padded")
    func latestKeepsTheFileName() throws {
        try withScratchDirectory { directory in
            let checkpoints = CheckpointDirectory(path: directory)
            let model = TinyNet(seed: 1)
            let adam = Adam(model.parameters())
            try checkpoints.save(Checkpoint(capturing: model, optimizer: adam, epoch: 2, shuffling: SeededGenerator(seed: 2)))
            // Copied in by hand, without the padding `save` uses.
            try Checkpoint(capturing: model, optimizer: adam, epoch: 12, shuffling: SeededGenerator(seed: 12))
                .write(to: "\(directory)/epoch-12.safetensors")
            #expect(checkpoints.latestPath() == "\(directory)/epoch-12.safetensors")
            #expect(try checkpoints.latest()?.epoch == 12)
        }
    }

    @Test("a checkpoint file keeps the model, the optimizer, the epoch and both generators exactly")
    func checkpointRoundTrip() throws {
        try withScratchDirectory { directory in
            let model = TinyNet(seed: 1)
            model.compile(optimizer: Adam(learningRate: 0.01), loss: CrossEntropyLoss())
            try model.fit(blobs(count: 20, seed: 3), epochs: 1, batchSize: 5, generator: SeededGenerator(seed: 4),
                          progress: .silent)
            let optimizer = try #require(model.compiledOptimizer)
            var shuffling = SeededGenerator(seed: 8)
            _ = shuffling.next()
            let checkpoint = Checkpoint(capturing: model, optimizer: optimizer, epoch: 7, shuffling: shuffling)
            try checkpoint.write(to: "\(directory)/c.safetensors")
            let read = try Checkpoint.read(path: "\(directory)/c.safetensors")
            #expect(read.epoch == 7 && read.shuffling == shuffling && read.globalRandom == checkpoint.globalRandom)
            #expect(bits(read.model) == bits(model.stateDict()))
            #expect(bits(read.optimizer) == bits(checkpoint.optimizer))
            #expect(read.optimizer["fc1.weight.step"]?.integerScalar == 4)
            #expect(read.optimizer.keys.contains("bn.weight.exp_avg_sq"))
        }
    }

    @Test("a safetensors file that is not a checkpoint is refused, naming the metadata key")
    func notACheckpoint() throws {
        try withScratchDirectory { directory in
            try TinyNet(seed: 1).save(to: "\(directory)/m.safetensors")
            let error = try #require(throws: SafetensorsError.self) { try Checkpoint.read(path: "\(directory)/m.safetensors") }
            #expect(error == .invalidMetadata(path: "\(directory)/m.safetensors", key: "format",
                                              problem: "expected 'normkit-checkpoint-1', found 'pt'"))
        }
    }

    @Test("a checkpoint of a different model is refused by name, leaving the model unchanged")
    func checkpointOfAnotherModel() throws {
        try withScratchDirectory { directory in
            let checkpoints = CheckpointDirectory(path: directory)
            let other = SeedMLP(inputFeatures: 4, hiddenFeatures: 6, classes: 2, batchNorm: false)
            try checkpoints.save(Checkpoint(capturing: other, optimizer: Adam(other.parameters()), epoch: 1,
                                            shuffling: SeededGenerator(seed: 1)))
            let model = TinyNet(seed: 1)
            let before = bits(model.stateDict())
            let error = try #require(throws: StateDictError.self) {
                try checkpoints.latest()!.restore(into: model, optimizer: Adam(model.parameters()), restoringGlobalRandom: false)
            }
            #expect(error.missingKeys.contains("bn.running_var"))
            #expect(bits(model.stateDict()) == before)
        }
    }

    @Test("a checkpoint whose optimizer state does not fit is refused, and the model is left as it was")
    func checkpointOfAnotherOptimizer() throws {
        let saved = TinyNet(seed: 1)
        let checkpoint = Checkpoint(capturing: saved, optimizer: Adam(saved.parameters()), epoch: 1,
                                    shuffling: SeededGenerator(seed: 1))
        let model = TinyNet(seed: 2)
        let before = bits(model.stateDict())
        #expect(before != bits(saved.stateDict()), "the two models differ, so a partial restore would show")
        let error = try #require(throws: StateDictError.self) {
            try checkpoint.restore(into: model, optimizer: SGD(model.parameters(), learningRate: 0.1),
                                   restoringGlobalRandom: false)
        }
        #expect(error.unexpectedKeys.contains("step_count"))
        #expect(bits(model.stateDict()) == before, "the model's state was restored only partly")
    }

    // Runs in a child process: resuming moves GlobalRandom, which other suites draw from.
    // The child prints each failed check on standard output; the parent reports them.
    @Test("a run stopped after 2 of 4 epochs and resumed ends bit for bit where an uninterrupted run ends")
    func resumeEqualsUninterrupted() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            func check(_ condition: Bool, _ message: String) { if !condition { print("FAIL: \(message)") } }
            try withScratchDirectory { directory in
                let data = blobs(count: 46, seed: 21)   // 46 = 4 batches of 10 and one of 6
                func train(_ model: TinyNet, epochs: Int, generatorSeed: UInt64, into run: String,
                           resume: Bool) throws -> Int {
                    model.compile(optimizer: Adam(learningRate: 0.02), loss: CrossEntropyLoss())
                    return try model.fit(data, epochs: epochs, batchSize: 10, generator: SeededGenerator(seed: generatorSeed),
                                         progress: .silent, checkpoints: CheckpointDirectory(path: "\(directory)/\(run)"),
                                         resume: resume).resumedAfterEpoch
                }

                GlobalRandom.seed(5)
                let uninterrupted = TinyNet(seed: 1)
                _ = try train(uninterrupted, epochs: 4, generatorSeed: 11, into: "a", resume: false)
                let globalAfter = GlobalRandom.current

                GlobalRandom.seed(5)
                _ = try train(TinyNet(seed: 1), epochs: 2, generatorSeed: 11, into: "b", resume: false)
                // "A new process": other initial weights, another global seed, another shuffling seed — all replaced.
                GlobalRandom.seed(999)
                let resumed = TinyNet(seed: 77)
                let resumedAfter = try train(resumed, epochs: 4, generatorSeed: 12345, into: "b", resume: true)

                check(resumedAfter == 2, "resumed after epoch \(resumedAfter), expected 2")
                check(bits(resumed.stateDict()) == bits(uninterrupted.stateDict()),
                             "resumed weights differ from the uninterrupted run's")
                check(GlobalRandom.current == globalAfter, "GlobalRandom was not restored")
                let finalA = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/a/epoch-0004.safetensors"))
                let finalB = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/b/epoch-0004.safetensors"))
                check(finalA == finalB, "the final checkpoints (model, optimizer, generators) differ")
                // A fresh model trained for 4 epochs from another start differs: the comparison can fail.
                let fresh = TinyNet(seed: 77)
                _ = try train(fresh, epochs: 4, generatorSeed: 11, into: "c", resume: false)
                check(bits(fresh.stateDict()) != bits(uninterrupted.stateDict()), "the check cannot tell runs apart")
            }
        }
        let failures = result.map { String(decoding: $0.standardOutputContent, as: UTF8.self) } ?? ""
        #expect(!failures.contains("FAIL"), "\(failures)")
    }
}
