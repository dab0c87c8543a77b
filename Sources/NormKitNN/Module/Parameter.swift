import NormKitCore

/// A trainable tensor owned by a layer (PyTorch's `nn.Parameter`).
///
/// A parameter is a reference: the layer, the optimizer and the autodiff graph
/// all see the same value. Using `tensor` in a forward pass links it into the
/// graph as a leaf, and `backward()` accumulates into `gradient`.
public final class Parameter: CustomStringConvertible {
    /// The current value. Optimizers update it in place.
    public var value: Tensor
    /// Whether gradients flow into this parameter and optimizers update it.
    public var isTrainable: Bool
    let node = GradientNode(leaf: "parameter")

    public init(_ value: Tensor, isTrainable: Bool = true) {
        self.value = value.detached()
        self.isTrainable = isTrainable
    }

    /// The value as it enters a computation: a graph leaf when trainable and
    /// recording, a plain constant otherwise.
    public var tensor: Tensor { isTrainable ? value.attached(to: node) : value }

    /// The gradient accumulated by the last `backward()` calls, if any.
    public var gradient: Tensor? { node.gradient }

    /// Forgets the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    public func clearGradient() { node.clearGradient() }

    public var shape: [Int] { value.shape }

    public var description: String { "Parameter(shape: \(value.shape), trainable: \(isTrainable))" }
}
