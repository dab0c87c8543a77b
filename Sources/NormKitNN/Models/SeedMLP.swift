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

    public override func forward(_ x: Tensor) throws -> Tensor {
        var hidden = try fc1(x)
        if let bn { hidden = try bn(hidden) }
        return try softmax(fc2(relu(hidden)))
    }
}
