import NormKitCore

/// The seed model: 784 → Linear 64 → BatchNorm1d → ReLU → Linear 10 → softmax.
///
/// Layer names match the PyTorch example (`fc1`, `bn`, `fc2`), so its state
/// dict reads `fc1.weight`, `bn.running_mean`, … With `batchNorm: false` the
/// `bn` layer is absent (the comparison model). The output is probabilities;
/// train it with `SparseCategoricalCrossentropy`.
public final class SeedMLP: Module {
    public let fc1: Linear
    public let bn: BatchNorm1d?
    public let fc2: Linear
    public let softmax = Softmax()

    public init(inputFeatures: Int = 784, hiddenFeatures: Int = 64, classes: Int = 10, batchNorm: Bool = true) {
        fc1 = Linear(inputFeatures, hiddenFeatures)
        bn = batchNorm ? BatchNorm1d(hiddenFeatures) : nil
        fc2 = Linear(hiddenFeatures, classes)
        super.init()
    }

    /// A seed model shaped like the one `state` was saved from (NormKit's or the
    /// PyTorch example's): sizes from `fc1.weight` (hidden, input) and `fc2.weight`
    /// (classes, hidden), batch norm when `bn.weight` or `bn.running_mean` is present.
    /// The parameters are fresh; load `state` into it with `loadStateDict(_:strict:)`.
    /// - Throws: `StateDictError` when the fc1/fc2 weights are missing or not rank 2.
    public convenience init(shapedLike state: StateDict) throws(StateDictError) {
        let first = state["fc1.weight"]?.shape, second = state["fc2.weight"]?.shape
        guard let first, let second, first.count == 2, second.count == 2 else {
            let missing = ["fc1.weight", "fc2.weight"].filter { state[$0] == nil }
            throw StateDictError(missingKeys: missing, unexpectedKeys: [], mismatchedKeys: [first, second].enumerated().compactMap {
                guard let shape = $0.element, shape.count != 2 else { return nil }
                return .init(key: "fc\($0.offset + 1).weight", expected: "float[out, in]", found: "float\(shape)")
            }, model: "SeedMLP")
        }
        self.init(inputFeatures: first[1], hiddenFeatures: first[0], classes: second[0],
                  batchNorm: state["bn.weight"] != nil || state["bn.running_mean"] != nil)
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        var hidden = try fc1(x)
        if let bn { hidden = try bn(hidden) }
        return try softmax(fc2(relu(hidden)))
    }
}
