/// One recorded operation in the reverse-mode autodiff graph.
///
/// Each differentiable op that sees an input with a node creates one node for
/// its output: the op's name, its inputs' nodes and a pullback that maps the
/// output's gradient to its inputs' gradients. Batch normalization, linear
/// layers and losses are single nodes with fused pullbacks, not chains of
/// elementwise ops. Leaves (parameters) have no pullback and keep the
/// gradient that `backward()` accumulates into them.
public final class GradientNode {
    /// The operation's name, e.g. "matmul", "batchNorm", "softmax".
    public let operation: String
    // `var` only so that `deinit` can unlink them.
    var inputs: [GradientNode?]
    var pullback: ((consuming Tensor) -> [Tensor?])?
    /// The accumulated gradient (kept on leaves after `backward()`).
    public internal(set) var gradient: Tensor?

    /// A leaf: gradients stop here and accumulate.
    public init(leaf operation: String = "parameter") {
        self.operation = operation
        self.inputs = []
        self.pullback = nil
    }

    init(operation: String, inputs: [GradientNode?], pullback: @escaping (consuming Tensor) -> [Tensor?]) {
        self.operation = operation
        self.inputs = inputs
        self.pullback = pullback
    }

    /// Releases the graph behind this node iteratively. Left to Swift, each node's
    /// release releases its inputs from inside its own deinit, one stack frame per
    /// node along the chain: dropping a graph ~50 000 ops deep overflowed an 8 MiB
    /// stack (the hazard `topologicalOrder` avoids in `backward()`). Nodes this
    /// one alone keeps alive are unlinked here, so each dies with nothing to release.
    deinit {
        var pending = inputs.compactMap { $0 }
        inputs = []
        pullback = nil   // its captures (op inputs) are in `pending` already
        while var node = pending.popLast() {
            guard isKnownUniquelyReferenced(&node) else { continue }
            pending.append(contentsOf: node.inputs.compactMap { $0 })
            node.inputs = []
            node.pullback = nil
        }
    }

    public var isLeaf: Bool { pullback == nil }

    /// Forgets the accumulated gradient (before the next step).
    public func clearGradient() { gradient = nil }

    /// Adds `incoming` to the accumulated gradient, as `backward()` does for a
    /// leaf. With no gradient yet, the node shares `incoming`'s storage (no copy):
    /// a caller that reuses that tensor as a buffer next step gets a fresh copy
    /// from copy-on-write only if the node still holds it then.
    public func accumulateGradient(_ incoming: Tensor) { accumulate(incoming) }

    func accumulate(_ incoming: Tensor) {
        if let existing = gradient {
            precondition(existing.shape == incoming.shape,
                         "gradient shape \(incoming.shape) does not match \(existing.shape) in \(operation)")
            var sum = existing
            sum.withUnsafeMutableBufferPointer { dst in
                incoming.withUnsafeBufferPointer { src in
                    for i in dst.indices { dst[i] += src[i] }
                }
            }
            gradient = sum
        } else {
            gradient = incoming.detached()
        }
    }
}

/// Switches for recording the autodiff graph.
public enum Autodiff {
    @TaskLocal static var isRecordingDisabled = false

    /// Whether ops record graph nodes now.
    public static var isRecording: Bool { !isRecordingDisabled }

    /// Runs `body` without recording the graph (inference, evaluation, metrics),
    /// like PyTorch's `torch.no_grad()`.
    public static func withoutRecording<R>(_ body: () throws -> R) rethrows -> R {
        try $isRecordingDisabled.withValue(true) { try body() }
    }
}

extension Tensor {
    /// Links `self` (the output of `operation`) to `inputs` in the graph when any
    /// of them carries a node and recording is on. The pullback receives the
    /// gradient of the output and returns one gradient (or nil) per input.
    /// It owns that gradient (`consuming`): `backward()` keeps no copy, so when
    /// the storage is not shared (`isKnownUniquelyReferenced`) the pullback may
    /// write an input's gradient into it (batch norm writes dx over dy).
    /// This is how a new differentiable op (or a fused one) joins the graph.
    public mutating func record(_ operation: String, inputs: [Tensor], pullback: @escaping (consuming Tensor) -> [Tensor?]) {
        guard inputs.contains(where: { $0.gradientNode != nil }), Autodiff.isRecording else {
            gradientNode = nil
            return
        }
        gradientNode = GradientNode(operation: operation, inputs: inputs.map(\.gradientNode), pullback: pullback)
    }

    /// This value as a leaf of the graph: gradients accumulate into `node`.
    public func attached(to node: GradientNode) -> Tensor {
        var result = self
        result.gradientNode = Autodiff.isRecording ? node : nil
        return result
    }

    /// Back-propagates from this scalar: accumulates d(self)/d(leaf) into every
    /// leaf node reachable from it. Intermediate gradients are freed as soon as
    /// they have been passed on.
    public func backward() {
        precondition(scalarCount == 1, "backward() needs a scalar loss, shape is \(shape)")
        guard let root = gradientNode else {
            preconditionFailure("backward() on a value that does not depend on any parameter")
        }
        backward(seed: Tensor(repeating: 1, shape: shape), from: root)
    }

    /// Back-propagates `seed` (the gradient of some scalar with respect to this
    /// tensor) into the graph.
    public func backward(gradient seed: Tensor) {
        precondition(seed.shape == shape, "gradient shape \(seed.shape) does not match tensor shape \(shape)")
        guard let root = gradientNode else { return }
        backward(seed: seed, from: root)
    }

    private func backward(seed: Tensor, from root: GradientNode) {
        let order = topologicalOrder(from: root)
        root.accumulate(seed)
        // Pullbacks compute plain values: nothing they do is recorded.
        Autodiff.withoutRecording {
            for node in order.reversed() {
                guard let pullback = node.pullback, let gradient = node.gradient else { continue }
                node.gradient = nil
                // Handed over, not copied: the pullback may reuse its storage.
                let inputGradients = pullback(consume gradient)
                precondition(inputGradients.count == node.inputs.count,
                             "\(node.operation) returned \(inputGradients.count) gradients for \(node.inputs.count) inputs")
                for (input, inputGradient) in zip(node.inputs, inputGradients) {
                    if let input, let inputGradient { input.accumulate(inputGradient) }
                }
            }
        }
    }

    /// Nodes reachable from `root`, each after all of its inputs (iterative DFS,
    /// so deep graphs cannot overflow the stack).
    private func topologicalOrder(from root: GradientNode) -> [GradientNode] {
        var order: [GradientNode] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradientNode, Bool)] = [(root, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded { order.append(node); continue }
            guard visited.insert(ObjectIdentifier(node)).inserted else { continue }
            stack.append((node, true))
            for case let input? in node.inputs where !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }
        return order
    }
}
