import NormKit

/// The network of the batch-normalization paper's Figure 1 (Ioffe & Szegedy
/// 2015, §4.1, https://arxiv.org/abs/1502.03167): fully connected sigmoid
/// hidden layers and a linear output whose softmax lives in the loss.
///
/// With batch norm each hidden layer computes sigmoid(BN(W·x)): the bias is
/// left out because BN's β replaces it (§3.2). Every weight starts from
/// N(0, σ²) — "small random Gaussian values" — and biases from 0, so the two
/// variants built from the same generator start from identical weights.
/// Shapes: input (batch, inputFeatures) → logits (batch, classes).
public final class SigmoidNetwork: Module {
    public let hidden: [Linear]
    public let norms: [BatchNorm1d]
    public let output: Linear

    public init(inputFeatures: Int, hiddenWidths: [Int] = [100, 100, 100], classes: Int = 10, batchNorm: Bool,
                initialStandardDeviation sigma: Float, generator: inout SeededGenerator) {
        precondition(!hiddenWidths.isEmpty, "SigmoidNetwork needs at least one hidden layer")
        let widths = [inputFeatures] + hiddenWidths
        hidden = hiddenWidths.indices.map { Linear(widths[$0], widths[$0 + 1], bias: !batchNorm) }
        norms = batchNorm ? hiddenWidths.map { BatchNorm1d($0) } : []
        output = Linear(hiddenWidths.last!, classes)
        super.init()
        for layer in hidden + [output] {
            layer.weight!.value = .randomNormal(layer.weight!.shape, standardDeviation: sigma, using: &generator)
            layer.bias?.value = .zeros(layer.bias!.shape)
        }
    }

    public override func forward(_ input: Tensor) throws -> Tensor { try forwardCapturingLastInput(input).logits }

    /// The logits and the input to the last hidden layer's sigmoids (batch, lastHiddenWidth):
    /// BN's output with batch norm, the linear layer's without — the quantity of Figure 1 (b, c).
    public func forwardCapturingLastInput(_ input: Tensor) throws -> (logits: Tensor, lastSigmoidInput: Tensor) {
        var activation = input
        var preActivation = input
        for index in hidden.indices {
            preActivation = try hidden[index](activation)
            if !norms.isEmpty { preActivation = try norms[index](preActivation) }
            activation = sigmoid(preActivation)
        }
        return (try output(activation), preActivation)
    }
}
