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

    @Test("SGD refuses Nesterov without momentum (or with dampening), as PyTorch does, instead of plain SGD")
    func sgdNesterovWithoutMomentumTraps() async throws {
        let withoutMomentum = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = SGD(learningRate: 0.1, nesterov: true)
        }
        let dampened = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = SGD(learningRate: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true)
        }
        for result in [withoutMomentum, dampened] {
            let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
            #expect(message.contains("SGD: nesterov needs momentum > 0 and dampening 0"), "\(message)")
        }
    }

    @Test("Adam refuses beta 1 (its bias correction 1 − βᵗ would be 0 and every parameter NaN), as PyTorch does")
    func adamBetaOneTraps() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Adam(learningRate: 0.1, beta1: 1)
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("Adam: beta1 must be in [0, 1), got 1.0"), "\(message)")
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

    @Test("BatchNorm2d and BatchNorm3d stop on the wrong rank, naming the expected and the actual one")
    func batchNormWrongRankTraps() async throws {
        let rank3 = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try BatchNorm2d(3)(Tensor.zeros([4, 3, 5]))
        }
        let rank4 = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try BatchNorm3d(2)(Tensor.zeros([2, 2, 3, 3]))
        }
        let message3 = String(decoding: try #require(rank3).standardErrorContent, as: UTF8.self)
        let message4 = String(decoding: try #require(rank4).standardErrorContent, as: UTF8.self)
        #expect(message3.contains("BatchNorm2d(3, epsilon: 1e-05, newBatchWeight(0.1)) expects input of rank 4 (N, C, H, W), "
                                  + "got rank 3 (shape [4, 3, 5])"), "\(message3)")
        #expect(message4.contains("BatchNorm3d(2, epsilon: 1e-05, newBatchWeight(0.1)) expects input of rank 5 (N, C, D, H, W), "
                                  + "got rank 4 (shape [2, 2, 3, 3])"), "\(message4)")
    }

    @Test("a feature count set by the first input is fixed: a later input with another stops, naming both")
    func lazyFeatureCountIsFixed() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let layer = BatchNormalization()
            _ = try layer(Tensor.ones([2, 4]))
            _ = try layer(Tensor.ones([2, 5]))
        }
        let message = String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
        #expect(message.contains("BatchNorm(4, epsilon: 0.001, oldValueWeight(0.99), featureAxis: -1) expects 4 features "
                                 + "on axis -1, got 5 (input shape [2, 5])"), "\(message)")
    }

    @Test("epsilon ≤ 0 is rejected at construction, naming the layer and the value")
    func nonPositiveEpsilonTraps() async throws {
        let zero = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm2d(3, epsilon: 0)
        }
        let negative = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm(featureCount: 4, epsilon: -1e-5)
        }
        let zeroMessage = String(decoding: try #require(zero).standardErrorContent, as: UTF8.self)
        let negativeMessage = String(decoding: try #require(negative).standardErrorContent, as: UTF8.self)
        #expect(zeroMessage.contains("BatchNorm2d(3): epsilon must be > 0, got 0.0"), "\(zeroMessage)")
        #expect(negativeMessage.contains("BatchNorm(4): epsilon must be > 0, got -1e-05"), "\(negativeMessage)")
    }

    @Test("Batch Renormalization without running statistics, and ghost batches over features on axis 0, are refused")
    func inconsistentOptionsTrap() async throws {
        let renormalization = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm1d(3, tracksRunningStatistics: false, renormalization: .paperSchedule)
        }
        let ghost = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm(featureCount: 3, featureAxis: 0, ghostBatchSize: 2)
        }
        let renormalizationMessage = String(decoding: try #require(renormalization).standardErrorContent, as: UTF8.self)
        let ghostMessage = String(decoding: try #require(ghost).standardErrorContent, as: UTF8.self)
        #expect(renormalizationMessage.contains("BatchNorm1d(3): Batch Renormalization corrects toward the running "
                                                + "statistics, so it needs tracksRunningStatistics: true"),
                "\(renormalizationMessage)")
        #expect(ghostMessage.contains("BatchNorm(3): ghost batches split axis 0"), "\(ghostMessage)")
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
