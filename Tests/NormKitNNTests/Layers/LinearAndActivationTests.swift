// Linear (forward, gradients, layout, initialisation, lazy building) and the
// shape-preserving layers: ReLU, Sigmoid, Tanh, Softmax, Flatten.

import Foundation
import NormKitCore
@testable import NormKitNN
import Testing

/// y = x·Wᵀ + b in Double; x (batch, in), W (out, in) row-major, b (out).
private func referenceLinear(_ x: [Double], _ weight: [Double], _ bias: [Double], batch: Int, inFeatures: Int,
                             outFeatures: Int) -> [Double] {
    var y = [Double](repeating: 0, count: batch * outFeatures)
    for n in 0..<batch {
        for o in 0..<outFeatures {
            var total = bias[o]
            for i in 0..<inFeatures { total += x[n * inFeatures + i] * weight[o * inFeatures + i] }
            y[n * outFeatures + o] = total
        }
    }
    return y
}

@Suite("Linear")
struct LinearTests {
    @Test("forward computes x·Wᵀ + b with the weight stored (out, in)")
    func forwardMatchesReference() throws {
        let layer = makeLinear(4, 3, seed: 1)
        #expect(layer.weight?.shape == [3, 4])
        #expect(layer.bias?.shape == [3])
        let x = randomDoubles(5 * 4, seed: 2)

        let y = try layer(tensor(x, shape: [5, 4]))

        let weight = doubles(try #require(layer.weight).value), bias = doubles(try #require(layer.bias).value)
        #expect(y.shape == [5, 3])
        expectClose(y.scalars, referenceLinear(x, weight, bias, batch: 5, inFeatures: 4, outFeatures: 3),
                    relative: 1e-5, absolute: 1e-6, "output")
    }

    @Test("gradients of input, weight and bias match finite differences")
    func gradientsMatchFiniteDifferences() throws {
        let (batch, inFeatures, outFeatures) = (5, 4, 3)
        let layer = makeLinear(inFeatures, outFeatures, seed: 3)
        let weight = doubles(try #require(layer.weight).value), bias = doubles(try #require(layer.bias).value)
        let x = randomDoubles(batch * inFeatures, seed: 4)
        let w = randomDoubles(batch * outFeatures, seed: 5)
        let input = leaf(x, shape: [batch, inFeatures])

        try layer(input.tensor).backward(gradient: tensor(w, shape: [batch, outFeatures]))

        func loss(_ x: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
            weightedSum(referenceLinear(x, weight, bias, batch: batch, inFeatures: inFeatures, outFeatures: outFeatures), w)
        }
        expectClose(input.node.gradient, centralDifferences(at: x) { loss($0, weight, bias) },
                    relative: 1e-4, absolute: 1e-5, "dL/dx")
        expectClose(layer.weight?.gradient, centralDifferences(at: weight) { loss(x, $0, bias) },
                    relative: 1e-4, absolute: 1e-5, "dL/dW")
        expectClose(layer.bias?.gradient, centralDifferences(at: bias) { loss(x, weight, $0) },
                    relative: 1e-4, absolute: 1e-5, "dL/db")
    }

    @Test("initial weights and biases are uniform in ±1/√inFeatures, as in PyTorch")
    func initialisationFollowsPyTorch() throws {
        let inFeatures = 100
        let layer = makeLinear(inFeatures, 80, seed: 6)
        let bound = 1 / Double(inFeatures).squareRoot()
        let weights = doubles(try #require(layer.weight).value)
        let biases = doubles(try #require(layer.bias).value)

        #expect(weights.allSatisfy { abs($0) <= bound })
        #expect(biases.allSatisfy { abs($0) <= bound })
        // Uniform, not a narrower or a bell-shaped law: the extremes are reached,
        // the mean is ~0, and half of the values lie within half the bound.
        #expect(weights.map { abs($0) }.max()! > 0.99 * bound)
        #expect(abs(weights.reduce(0, +) / Double(weights.count)) < 0.05 * bound)
        let inner = Double(weights.filter { abs($0) < bound / 2 }.count) / Double(weights.count)
        #expect(abs(inner - 0.5) < 0.03, "fraction within half the bound: \(inner)")
    }

    @Test("Dense initialises as Keras' Dense when built: weight uniform in ±√(6/(in + out)) (Glorot), bias 0")
    func denseFollowsKeras() throws {
        let (inFeatures, outFeatures) = (500, 300)
        let layer = Dense(outFeatures)
        #expect(layer.weight == nil, "nothing drawn before the input size is known")
        _ = layer.build(inputShape: [1, inFeatures])
        let limit = (6 / Double(inFeatures + outFeatures)).squareRoot()
        #expect(layer.weight?.shape == [outFeatures, inFeatures], "stored (out, in), as every Linear")
        let weights = doubles(try #require(layer.weight).value)

        #expect(weights.allSatisfy { abs($0) <= limit })
        #expect(weights.map { abs($0) }.max()! > 0.99 * limit)
        let mean = weights.reduce(0, +) / Double(weights.count)
        #expect(abs(mean) < 0.01 * limit)
        // U(±a) has variance a²/3; the sample's relative spread at 150 000 values is ~0.2 %.
        let variance = weights.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(weights.count)
        #expect(abs(variance / (limit * limit / 3) - 1) < 0.02, "variance \(variance) against a²/3 = \(limit * limit / 3)")
        let inner = Double(weights.filter { abs($0) < limit / 2 }.count) / Double(weights.count)
        #expect(abs(inner - 0.5) < 0.01, "fraction within half the limit: \(inner)")
        #expect(try #require(layer.bias).value.scalars.allSatisfy { $0 == 0 }, "Keras' bias_initializer='zeros'")

        let noBias = Dense(4, useBias: false)
        _ = noBias.build(inputShape: [2, 6])
        #expect(noBias.bias == nil && noBias.namedParameters().map(\.0) == ["weight"])
    }

    @Test("the same generator gives the same Glorot weights, another generator others")
    func glorotIsReproducible() {
        func weights(seed: UInt64) -> [[Float]] {
            let layer = Linear(outFeatures: 6, bias: true, generator: SeededGenerator(seed: seed), initializer: .glorotUniform)
            _ = layer.build(inputShape: [3, 9])
            return layer.parameters().map(\.value.scalars)
        }
        #expect(weights(seed: 91) == weights(seed: 91))
        #expect(weights(seed: 91) != weights(seed: 92))
    }

    @Test("Linear(in, out), Linear(outFeatures:) and Dense(kernelInitializer: .pyTorchDefault) draw PyTorch's parameters alike")
    func pyTorchInitialisationIsShared() throws {
        let sized = Linear(7, 5, generator: SeededGenerator(seed: 90))
        let lazy = Linear(outFeatures: 5, generator: SeededGenerator(seed: 90))
        let dense = Linear(outFeatures: 5, bias: true, generator: SeededGenerator(seed: 90), initializer: .pyTorchDefault)
        _ = lazy.build(inputShape: [2, 7])
        _ = dense.build(inputShape: [2, 7])
        let expected = sized.parameters().map(\.value.scalars)
        #expect(lazy.parameters().map(\.value.scalars) == expected)
        #expect(dense.parameters().map(\.value.scalars) == expected)

        let chosen = Dense(5, kernelInitializer: .pyTorchDefault)
        _ = chosen.build(inputShape: [2, 7])
        let bound = 1 / Float(7).squareRoot()
        let bias = try #require(chosen.bias).value.scalars
        #expect(bias.allSatisfy { abs($0) <= bound } && bias.contains { $0 != 0 }, "PyTorch's bias, not Keras' zeros")
    }

    @Test("bias: false creates only the weight")
    func noBias() {
        let layer = Linear(3, 2, bias: false, generator: SeededGenerator(seed: 7))
        #expect(layer.bias == nil)
        #expect(layer.namedParameters().map(\.0) == ["weight"])
    }

    @Test("a lazy Linear creates its weight from the first input's feature count")
    func lazyLinearBuildsOnFirstForward() throws {
        let layer = Linear(outFeatures: 3, generator: SeededGenerator(seed: 8))
        #expect(layer.weight == nil)
        #expect(layer.parameters().isEmpty)

        let y = try layer(Tensor.ones([2, 6]))

        #expect(layer.inFeatures == 6)
        #expect(layer.weight?.shape == [3, 6])
        #expect(y.shape == [2, 3])
    }
}

@Suite("Activation and reshaping layers")
struct ActivationLayerTests {
    let x = randomDoubles(4 * 5, in: -6...6, seed: 20)

    @Test("ReLU, Sigmoid and Tanh layers apply their function elementwise")
    func elementwiseActivations() throws {
        let cases: [(Module, (Double) -> Double, String)] = [
            (ReLU(), { max($0, 0) }, "ReLU"),
            (Sigmoid(), { 1 / (1 + Foundation.exp(-$0)) }, "Sigmoid"),
            (Tanh(), { Foundation.tanh($0) }, "Tanh"),
        ]
        for (layer, reference, name) in cases {
            let y = try layer(tensor(x, shape: [4, 5]))
            #expect(y.shape == [4, 5], "\(name) keeps the shape")
            expectClose(y.scalars, x.map(reference), relative: 1e-6, absolute: 1e-7, name)
        }
    }

    @Test("Softmax turns each row into probabilities exp(x − max)/Σ exp(x − max)")
    func softmaxRows() throws {
        let y = try Softmax()(tensor(x, shape: [4, 5]))
        var expected: [Double] = []
        for row in 0..<4 {
            let values = Array(x[row * 5..<(row + 1) * 5])
            let top = values.max()!
            let exps = values.map { Foundation.exp($0 - top) }
            let total = exps.reduce(0, +)
            expected += exps.map { $0 / total }
        }
        expectClose(y.scalars, expected, relative: 1e-6, absolute: 1e-8, "softmax")
        #expect(y.gradientNode == nil, "no graph without a leaf input")
    }

    @Test("Flatten keeps the batch axis, merges the others, and keeps the values in order")
    func flattenMergesTrailingAxes() throws {
        let values = randomDoubles(2 * 3 * 4, seed: 21)
        let layer = Flatten()

        let y = try layer(tensor(values, shape: [2, 3, 4]))

        #expect(y.shape == [2, 12])
        #expect(y.scalars == values.map { Float($0) })
        #expect(layer.build(inputShape: [5, 3, 4]) == [5, 12])
    }

    @Test("Flatten and a small conv net map an empty batch to an empty batch of the right width, as PyTorch does")
    func flattenEmptyBatch() throws {
        // reshaped([0, -1]) cannot infer -1 from 0 values: Flatten stopped the process here.
        #expect(try Flatten()(Tensor.zeros([0, 3, 4, 4])).shape == [0, 48])
        let model = Sequential {
            Conv2D(1, 2, kernelSize: 3, padding: 1, generator: SeededGenerator(seed: 31))
            ReLU()
            MaxPool2D(2)
            Flatten()
            Linear(8, 3, generator: SeededGenerator(seed: 32))
        }
        model.eval()
        #expect(try model(Tensor.zeros([0, 1, 4, 4])).shape == [0, 3])
    }

    @Test("a Sequential of layers passes gradients through every layer (finite differences on the first weight)")
    func sequentialGradients() throws {
        let first = makeLinear(3, 4, seed: 22), second = makeLinear(4, 2, seed: 23)
        let model = Sequential {
            first
            Tanh()
            second
            Sigmoid()
        }
        let x = randomDoubles(5 * 3, seed: 24)
        let w = randomDoubles(5 * 2, seed: 25)
        let w1 = doubles(try #require(first.weight).value), b1 = doubles(try #require(first.bias).value)
        let w2 = doubles(try #require(second.weight).value), b2 = doubles(try #require(second.bias).value)

        try model(tensor(x, shape: [5, 3])).backward(gradient: tensor(w, shape: [5, 2]))

        let numeric = centralDifferences(at: w1) { weight in
            let hidden = referenceLinear(x, weight, b1, batch: 5, inFeatures: 3, outFeatures: 4).map { Foundation.tanh($0) }
            let out = referenceLinear(hidden, w2, b2, batch: 5, inFeatures: 4, outFeatures: 2).map { 1 / (1 + Foundation.exp(-$0)) }
            return weightedSum(out, w)
        }
        expectClose(first.weight?.gradient, numeric, relative: 1e-4, absolute: 1e-6, "dL/dW₁")
    }
}
