// Training parity with PyTorch for the seed CNN's layer types (Fixtures/make_cnn_training_fixture.py):
// the same small network, the same initial state and batches, three steps of Adam.

import Foundation
import NormKitCore
import NormKitIO
import NormKitNN
import Testing

@Suite("CNN training parity with PyTorch")
struct CNNTrainingParityTests {
    // Why these tolerances. Both sides compute in float32 with different summation orders, so
    // they can only agree to float32 rounding. How large that is here was measured with the
    // fixture: PyTorch's own float32 gradients of step 1 differ from its float64 ones by up to
    // 3.5e-6 of each tensor's largest value (the first convolution's weight, whose gradient sums
    // 6,272 products after three batch-norm backwards, each of which subtracts means). Ours differ
    // from PyTorch's by up to 4.8e-6. Two independent errors of that size can differ by their sum,
    // so 2e-5 is the bound for step 1; a real difference (a misrouted max-pool gradient, a biased
    // instead of unbiased variance, a missing term) moves some gradient by ≫ 1e-3.
    static let gradientTolerance = 2e-5
    /// The losses, the weights and the BN buffers after the Adam steps are compared to 1e-5 of each
    /// tensor's scale (measured: ≤ 2e-7, and 1.8e-6 for the running mean of the BatchNorm1d once the
    /// biases' share is out; PyTorch float32 against float64: ≤ 1.4e-7), except where
    /// Adam itself amplifies rounding, see `adamRoundingAllowance`.
    static let finalTolerance = 1e-5
    /// Adam moves a parameter by lr·m̂/(√v̂ + ε): a ratio that does not depend on the gradient's
    /// size. Where a step-1 gradient is within some 30 times its rounding error of 0
    /// (|g| < 1e-4·max|g|, the error being ≤ 5e-6·max|g|), rounding decides that ratio, so such an element may end anywhere within the ≤ lr per step
    /// Adam moves it, in PyTorch float32 against float64 just as here (one element of `9.weight`
    /// differs by 5e-6 in both comparisons). These elements may differ by 2·lr per step; the
    /// test checks that they are few.
    static let adamRoundingAllowance = 2 * 1e-3 * 3.0
    /// The biases of the layers that feed a batch norm, and that batch norm. Their gradient is 0
    /// exactly (BN subtracts any per-channel shift), so both frameworks get rounding noise and
    /// Adam moves the biases by noise-driven steps: they are compared only through their effect.
    static let biasesBeforeBatchNorm = [("0.bias", "1"), ("4.bias", "5"), ("9.bias", "10")]

    @Test("step 1: the loss and every parameter's gradient are PyTorch's within float32 rounding")
    func firstStepMatches() throws {
        let fixture = try ParityFixture()
        let run = try ParityRun(fixture)
        let expectedLosses = try fixture.floats("losses")
        #expect(abs(Double(run.losses[0]) - Double(expectedLosses[0])) <= 1e-6 * Double(expectedLosses[0]))
        let noisyBiases = Set(Self.biasesBeforeBatchNorm.map(\.0))
        #expect(run.firstGradients.count == 14)
        for (name, ours) in run.firstGradients.sorted(by: { $0.key < $1.key }) {
            let theirs = try fixture.floats("gradient.\(name)")
            if noisyBiases.contains(name) {
                // The true gradient is 0: both must be rounding noise next to the layer's weight gradient.
                let weightName = name.replacingOccurrences(of: ".bias", with: ".weight")
                let scale = Double(try fixture.floats("gradient.\(weightName)").map(abs).max()!)
                #expect(Double(ours.map(abs).max()!) <= 1e-4 * scale, "\(name): ours is not rounding noise")
                #expect(Double(theirs.map(abs).max()!) <= 1e-4 * scale, "\(name): PyTorch's is not rounding noise")
            } else {
                let error = scaledDifference(ours, theirs)
                #expect(error <= Self.gradientTolerance, "gradient of \(name): error \(error) of its scale")
            }
        }
    }

    @Test("three Adam steps: the losses, weights and BatchNorm buffers are PyTorch's within float32 rounding")
    func threeStepsMatch() throws {
        let fixture = try ParityFixture()
        let run = try ParityRun(fixture)
        let expectedLosses = try fixture.floats("losses")
        for (ours, theirs) in zip(run.losses, expectedLosses) {
            #expect(abs(Double(ours) - Double(theirs)) <= Self.finalTolerance * Double(theirs),
                    "losses \(run.losses) against \(expectedLosses)")
        }
        let expected = try fixture.state("final")
        #expect(Set(run.final.keys) == Set(expected.keys))
        let noisyBiases = Dictionary(uniqueKeysWithValues: Self.biasesBeforeBatchNorm)
        var roundingDecided = 0, elementCount = 0
        for (name, value) in run.final.sorted(by: { $0.key < $1.key }) {
            let theirValue = try #require(expected[name], "PyTorch has no \(name)")
            switch value {
            case .integer(let values, _):
                #expect(values == [3] && theirValue.integerScalar == 3, "\(name): \(values) against \(theirValue)")
            case .float(let tensor) where noisyBiases[name] != nil:
                // Adam moves it at most lr per step, in both frameworks; its value is checked through the running mean.
                let initial = try #require(fixture.state("initial")[name]).floatTensor.scalars
                let moved = zip(tensor.scalars, initial).map { abs(Double($0) - Double($1)) }.max()!
                #expect(moved <= 3 * 1e-3 * 1.0001, "\(name) moved \(moved) in three steps of lr 1e-3")
            case .float(let tensor) where name.hasSuffix("running_mean"):
                // mean(W·x + b) = mean(W·x) + b: take out each side's own bias history, then compare.
                let layer = String(name.dropLast(".running_mean".count))
                let biasName = try #require(noisyBiases.first { $0.value == layer }?.key)
                let ours = subtractingBiasHistory(tensor.scalars, history: run.biasHistory[biasName]!)
                let theirs = subtractingBiasHistory(theirValue.floatTensor.scalars,
                                                    history: try fixture.biasHistory(biasName))
                let error = scaledDifference(ours, theirs)
                #expect(error <= Self.finalTolerance, "\(name) without the biases' share: error \(error) of its scale")
            case .float(let tensor):
                let ours = tensor.scalars, theirs = theirValue.floatTensor.scalars
                let scale = Double(theirs.map(abs).max()!)
                // Gradients exist for parameters only; buffers (running_var) have none.
                let gradient = fixture.file.tensors["gradient.\(name)"]?.floats
                let gradientScale = gradient.map { Double($0.map(abs).max()!) } ?? 0
                // The worst element of each kind, so that a mismatch is one message per tensor.
                var worstTight = 0.0, worstLoose = 0.0
                for i in ours.indices {
                    let difference = abs(Double(ours[i]) - Double(theirs[i]))
                    if let gradient, Double(abs(gradient[i])) < 1e-4 * gradientScale {
                        roundingDecided += 1
                        worstLoose = max(worstLoose, difference)
                    } else {
                        worstTight = max(worstTight, difference)
                    }
                }
                #expect(worstTight <= Self.finalTolerance * scale, "\(name): error \(worstTight / scale) of its scale")
                #expect(worstLoose <= Self.adamRoundingAllowance, "\(name): a rounding-level element is off by \(worstLoose)")
                elementCount += ours.count
            }
        }
        // The loose allowance must stay the exception, or the comparison above would say little.
        #expect(roundingDecided * 50 < elementCount, "\(roundingDecided) of \(elementCount) elements had rounding-level gradients")
    }
}

/// The running mean after three steps without the share of the biases: with PyTorch's momentum
/// 0.1 and an initial 0, running = Σₖ 0.1·0.9^(3−k)·(mean(Wₖ·xₖ) + bₖ), so subtracting
/// Σₖ 0.1·0.9^(3−k)·bₖ leaves what the weights and the data made.
func subtractingBiasHistory(_ runningMean: [Float], history: [[Float]]) -> [Float] {
    let weights = history.indices.map { step in 0.1 * pow(0.9, Double(history.count - 1 - step)) }
    return runningMean.indices.map { channel in
        Float(Double(runningMean[channel]) - zip(weights, history).reduce(0) { $0 + $1.0 * Double($1.1[channel]) })
    }
}

/// NormKit's run of the fixture: the same network, initial state, batches and three Adam steps.
struct ParityRun {
    /// The loss of each step, before its update.
    var losses: [Float] = []
    /// Every parameter's gradient in step 1, by state-dict name.
    var firstGradients: [String: [Float]] = [:]
    /// The state dict after the three steps.
    var final: StateDict = [:]
    /// The biases that feed a batch norm, as each step's forward used them.
    var biasHistory: [String: [[Float]]] = [:]

    init(_ fixture: ParityFixture) throws {
        let model = fixture.makeNetwork()
        try model.loadStateDict(fixture.state("initial"))
        let parameters = Dictionary(uniqueKeysWithValues: model.namedParameters())
        let optimizer = Adam(model.trainableParameters(), learningRate: 1e-3)
        model.train()
        for step in 0..<3 {
            for (name, _) in CNNTrainingParityTests.biasesBeforeBatchNorm {
                biasHistory[name, default: []].append(parameters[name]!.value.scalars)
            }
            let output = try model(fixture.batch(step))
            let loss = CrossEntropyLoss()(output, try fixture.labels(step))
            optimizer.zeroGrad()
            loss.backward()
            if step == 0 {
                for (name, parameter) in parameters { firstGradients[name] = try #require(parameter.gradient).scalars }
            }
            optimizer.step()
            losses.append(loss.scalar)
        }
        final = model.stateDict()
    }
}

/// max |ours − theirs| / max |theirs|: the error relative to the tensor's scale.
func scaledDifference(_ ours: [Float], _ theirs: [Float]) -> Double {
    precondition(ours.count == theirs.count, "\(ours.count) values against \(theirs.count)")
    let scale = theirs.map { Double(abs($0)) }.max() ?? 0
    let error = zip(ours, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
    return scale == 0 ? error : error / scale
}

/// What make_cnn_training_fixture.py wrote.
struct ParityFixture {
    let path: String
    let file: SafetensorsFile

    init() throws {
        path = try fixturePath("cnn_training_pytorch")
        file = try SafetensorsFile.read(path: path)
    }

    /// The fixture's network: the seed CNN's layers in its order, 4 and 8 channels, 16 hidden.
    func makeNetwork() -> Sequential {
        Sequential {
            Conv2D(1, 4, kernelSize: 3, padding: 1)
            BatchNorm2d(4)
            ReLU()
            MaxPool2D(2)
            Conv2D(4, 8, kernelSize: 3, padding: 1)
            BatchNorm2d(8)
            ReLU()
            MaxPool2D(2)
            Flatten()
            Linear(8 * 7 * 7, 16)
            BatchNorm1d(16)
            ReLU()
            Linear(16, 10)
        }
    }

    /// The entries named `prefix.<key>`, as a state dict keyed `<key>`.
    func state(_ prefix: String) throws -> StateDict {
        var state: StateDict = [:]
        for (name, tensor) in file.tensors where name.hasPrefix(prefix + ".") {
            state[String(name.dropFirst(prefix.count + 1))] = tensor.stateValue
        }
        return state
    }

    func floats(_ name: String) throws -> [Float] { try file.tensor(name, path: path).floats }

    /// PyTorch's values of bias `name` at each step's forward (`bias_history.<name>`, (3, C)).
    func biasHistory(_ name: String) throws -> [[Float]] {
        let history = try file.tensor("bias_history.\(name)", path: path)
        let values = history.floats, channels = history.shape[1]
        return (0..<history.shape[0]).map { Array(values[($0 * channels)..<(($0 + 1) * channels)]) }
    }

    /// Batch `step` as PyTorch fed it: float32(byte) / 255, shape (8, 1, 28, 28).
    func batch(_ step: Int) throws -> Tensor {
        let images = try file.tensor("images", path: path)
        let perBatch = images.elementCount / images.shape[0]
        let bytes = try #require(images.integers)[(step * perBatch)..<((step + 1) * perBatch)]
        return Tensor(bytes.map { Float($0) / 255 }, shape: Array(images.shape.dropFirst()))
    }

    func labels(_ step: Int) throws -> [Int] {
        let labels = try file.tensor("labels", path: path)
        let perBatch = labels.shape[1]
        return try #require(labels.integers)[(step * perBatch)..<((step + 1) * perBatch)].map { Int($0) }
    }
}
