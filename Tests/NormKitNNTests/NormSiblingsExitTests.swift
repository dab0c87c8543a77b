// Programmer errors in the normalization siblings stop the process with a
// message that names what was expected and what was found (Swift Testing exit
// tests run each body in a child process).

import NormKitCore
import NormKitNN
import Testing

@Suite("Normalization siblings: programmer errors")
struct NormSiblingsExitTests {
    /// What a child process that stopped wrote to standard error (exit-test bodies cannot
    /// capture context, so each test spells out its `#expect(processExitsWith:)`).
    private func standardError(_ result: ExitTest.Result?) throws -> String {
        String(decoding: try #require(result).standardErrorContent, as: UTF8.self)
    }

    @Test("LayerNorm stops on an input whose trailing dims are not normalizedShape, naming both")
    func layerNormShapeMismatch() async throws {
        let message = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try LayerNorm(4)(Tensor.zeros([2, 5]))
        })
        #expect(message.contains("LayerNorm([4], epsilon: 1e-05) expects input of shape [*, 4], got shape [2, 5]"),
                "\(message)")
    }

    @Test("GroupNorm stops on an input with the wrong channel count, naming both")
    func groupNormChannelMismatch() async throws {
        let message = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try GroupNorm(groupCount: 2, channelCount: 6)(Tensor.zeros([2, 4, 3]))
        })
        #expect(message.contains("expects input (batch, 6, …), got shape [2, 4, 3]"), "\(message)")
    }

    @Test("GroupNorm rejects a group count that does not divide the channels")
    func groupCountMustDivideChannels() async throws {
        let message = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GroupNorm(groupCount: 4, channelCount: 6)
        })
        #expect(message.contains("groupCount 4 must divide channelCount 6"), "\(message)")
    }

    @Test("InstanceNorm2d stops on an input of the wrong rank, naming the ranks it takes and the shape")
    func instanceNormRankMismatch() async throws {
        let message = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try InstanceNorm2d(3)(Tensor.zeros([2, 3]))
        })
        #expect(message.contains("of rank 4, or rank 3 without the batch axis, got shape [2, 3]"), "\(message)")
    }

    @Test("InstanceNorm1d stops on an input with the wrong channel count")
    func instanceNormChannelMismatch() async throws {
        let message = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try InstanceNorm1d(3)(Tensor.zeros([2, 4, 5]))
        })
        #expect(message.contains("expects 3 channels on axis 1, got shape [2, 4, 5]"), "\(message)")
    }

    @Test("epsilon ≤ 0 is rejected")
    func nonPositiveEpsilon() async throws {
        let layerNorm = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = LayerNorm(4, epsilon: 0)
        })
        #expect(layerNorm.contains("LayerNorm: epsilon must be > 0, got 0.0"), "\(layerNorm)")
        let groupNorm = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GroupNorm(groupCount: 1, channelCount: 2, epsilon: -1e-5)
        })
        #expect(groupNorm.contains("GroupNorm: epsilon must be > 0, got -1e-05"), "\(groupNorm)")
        let instanceNorm = try standardError(await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = InstanceNorm3d(2, epsilon: 0)
        })
        #expect(instanceNorm.contains("InstanceNorm3d: epsilon must be > 0, got 0.0"), "\(instanceNorm)")
    }
}
