import NormKitCore

/// max(x, 0) elementwise.
public final class ReLU: Module {
    public override init() { super.init() }
    public override func forward(_ input: Tensor) throws -> Tensor { relu(input) }
}

/// 1 / (1 + e⁻ˣ) elementwise.
public final class Sigmoid: Module {
    public override init() { super.init() }
    public override func forward(_ input: Tensor) throws -> Tensor { sigmoid(input) }
}

/// tanh elementwise.
public final class Tanh: Module {
    public override init() { super.init() }
    public override func forward(_ input: Tensor) throws -> Tensor { tanh(input) }
}

/// Softmax over the last axis: turns logits into probabilities.
///
/// Feed its output to `SparseCategoricalCrossentropy` (probabilities), not to
/// `CrossEntropyLoss` (which applies softmax itself; NormKit warns if you do).
public final class Softmax: Module {
    public override init() { super.init() }
    public override func forward(_ input: Tensor) throws -> Tensor { input.softmax() }
}

/// Flattens every axis after the batch axis: (N, d1, d2, …) → (N, d1·d2·…).
public final class Flatten: Module {
    public override init() { super.init() }
    public override func build(inputShape: [Int]) -> [Int] { [inputShape[0], inputShape.dropFirst().reduce(1, *)] }
    /// The width is the product of the trailing axes, not inferred with −1: an empty batch has
    /// no values to infer it from, and (0, C, H, W) → (0, C·H·W) as in PyTorch.
    public override func forward(_ input: Tensor) throws -> Tensor {
        input.reshaped([input.shape[0], input.shape.dropFirst().reduce(1, *)])
    }
}
