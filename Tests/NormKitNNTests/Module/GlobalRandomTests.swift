// Everything that draws from the process-wide `GlobalRandom` stream: models
// built without an explicit generator (SeedMLP, Dense) and the seeding itself.
//
// Every other test in this target passes its own generator. The one test that
// depends on the stream's position runs in a child process (an exit test), so
// nothing else in the test process — other suites, other test targets such as
// the examples' — can draw from the stream between its seed and its models.

import NormKitCore
@testable import NormKitNN
import Testing

@Suite("GlobalRandom and models built from it")
struct GlobalRandomTests {
    @Test("SeedMLP's parameters are named fc1, bn, fc2 as in the PyTorch example")
    func seedMLPParameterNames() {
        let model = SeedMLP(inputFeatures: 12, hiddenFeatures: 5, classes: 3)
        #expect(model.namedParameters().map(\.0) == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                                                      "fc2.weight", "fc2.bias"])
        #expect(model.namedParameters().map(\.1.shape) == [[5, 12], [5], [5], [5], [3, 5], [3]])
    }

    @Test("SeedMLP without batch norm has no bn parameters and no bn module")
    func seedMLPWithoutBatchNorm() {
        let model = SeedMLP(inputFeatures: 12, hiddenFeatures: 5, classes: 3, batchNorm: false)
        #expect(model.namedParameters().map(\.0) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"])
        #expect(!model.namedModules().contains { $0.0 == "bn" })
    }

    @Test("the default SeedMLP has 784·64 + 64 + 2·64 + 64·10 + 10 parameters")
    func seedMLPParameterCount() {
        #expect(SeedMLP().parameterCount == 784 * 64 + 64 + 2 * 64 + 64 * 10 + 10)
    }

    @Test("SeedMLP outputs probabilities: each row is non-negative and sums to 1")
    func seedMLPOutputsProbabilities() throws {
        let model = SeedMLP(inputFeatures: 6, hiddenFeatures: 4, classes: 3)
        let y = try model(tensor(randomDoubles(5 * 6, seed: 1), shape: [5, 6]))
        #expect(y.shape == [5, 3])
        #expect(y.scalars.allSatisfy { $0 >= 0 })
        for row in 0..<5 {
            expectClose(Float((0..<3).map { Double(y[row, $0]) }.reduce(0, +)), 1, relative: 1e-6, "row \(row) sum")
        }
    }

    @Test("lazy Dense layers are built at once by Sequential(inputShape:)")
    func denseBuildsFromInputShape() {
        let first = Dense(4), second = Dense(2)
        #expect(first.weight == nil, "a lazy Dense has no weight before it is built")
        let model = Sequential(inputShape: [6]) {
            first
            ReLU()
            second
        }
        #expect(model.namedParameters().map(\.0) == ["0.weight", "0.bias", "2.weight", "2.bias"])
        #expect(first.weight?.shape == [4, 6])
        #expect(second.weight?.shape == [2, 4])
        #expect(Dense(3, useBias: false).description == "Linear(? → 3, no bias)")
    }

    @Test("GlobalRandom.seed makes two models identical, and another seed makes them differ")
    func seedingMakesModelsIdentical() async {
        await #expect(processExitsWith: .success) {
            let a = seededModelParameters(seed: 42), b = seededModelParameters(seed: 42)
            let c = seededModelParameters(seed: 43)
            precondition(a == b, "the same seed gave different initial weights")
            precondition(a != c, "different seeds gave the same initial weights")
        }
    }
}

/// The initial parameter values of a small SeedMLP and a Keras-style model of
/// lazily built `Dense` layers, built right after `GlobalRandom.seed(seed)`.
private func seededModelParameters(seed: UInt64) -> [[Float]] {
    GlobalRandom.seed(seed)
    let mlp = SeedMLP(inputFeatures: 8, hiddenFeatures: 5, classes: 3)
    let keras = Sequential(inputShape: [8]) {
        Dense(5)
        BatchNormalization()
        Dense(3)
    }
    return (mlp.parameters() + keras.parameters()).map(\.value.scalars)
}
