// Programmer errors stop the process with a message that names both shapes
// (Swift Testing exit tests run each body in a child process), and the
// progress styles' effect on standard output, observed from a child process
// so that nothing else writes to it.

import NormKitCore
@testable import NormKitNN
import Testing

@Suite("Programmer errors and process output")
struct ExitTests {
    @Test("Linear stops on an input whose feature count differs from its weight's, naming both")
    func linearShapeMismatchTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let layer = makeLinear(4, 3, seed: 1)
            _ = try layer(Tensor.zeros([2, 5]))
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("Linear(4 → 3) expects input (batch, 4), got shape [2, 5]"), "\(message)")
    }

    @Test("BatchNorm1d stops on an input with the wrong number of features")
    func batchNormFeatureMismatchTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try BatchNorm1d(3)(Tensor.zeros([4, 5]))
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("BatchNorm1d(3, epsilon: 1e-05, newBatchWeight(0.1)) expects 3 features on axis 1, got 5 (input shape [4, 5])"),
                "\(message)")
    }

    @Test("a loss stops on a label outside the classes")
    func labelOutOfRangeTraps() async {
        await #expect(processExitsWith: .failure) {
            _ = crossEntropy(logits: Tensor.zeros([2, 3]), labels: [0, 3])
        }
    }

    @Test("fit with progress .silent writes nothing to standard output, while .lines writes one line per epoch")
    func silentProgressPrintsNothing() async throws {
        let silent = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let model = Sequential { makeLinear(4, 2, seed: 1) }
            model.compile(optimizer: SGD(learningRate: 0.1), loss: CrossEntropyLoss(), metrics: [.accuracy])
            let data = gaussianBlobs(count: 32, features: 4, seed: 2)
            try model.fit(x: data.x, y: data.y, epochs: 2, batchSize: 8, generator: SeededGenerator(seed: 3),
                          progress: .silent)
        }
        let lines = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let model = Sequential { makeLinear(4, 2, seed: 1) }
            model.compile(optimizer: SGD(learningRate: 0.1), loss: CrossEntropyLoss(), metrics: [.accuracy])
            let data = gaussianBlobs(count: 32, features: 4, seed: 2)
            try model.fit(x: data.x, y: data.y, epochs: 2, batchSize: 8, generator: SeededGenerator(seed: 3),
                          progress: .lines)
        }
        let silentOutput = String(decoding: try #require(silent).standardOutputContent, as: UTF8.self)
        let linesOutput = String(decoding: try #require(lines).standardOutputContent, as: UTF8.self)
        #expect(silentOutput.isEmpty, "\(silentOutput)")
        #expect(linesOutput.contains("Epoch 1/2") && linesOutput.contains("Epoch 2/2"), "\(linesOutput)")
    }
}
