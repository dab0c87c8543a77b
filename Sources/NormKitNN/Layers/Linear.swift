import NormKitCore

/// A fully connected layer: y = x · Wᵀ + b (PyTorch's `nn.Linear`, Keras' `Dense`).
///
/// Shapes: input (batch, inFeatures) → output (batch, outFeatures). The weight
/// is stored (outFeatures, inFeatures), PyTorch's layout, so state dicts move
/// between the two unchanged. Initialisation follows PyTorch: W and b uniform
/// in ±1/√inFeatures. When `inFeatures` is not given (Keras' `Dense(64)`) the
/// parameters are created by `build(inputShape:)` or the first forward pass.
public final class Linear: Module {
    public let outFeatures: Int
    public private(set) var inFeatures: Int?
    public private(set) var weight: Parameter?
    public private(set) var bias: Parameter?
    private let hasBias: Bool
    private var generator: SeededGenerator

    /// PyTorch spelling: `Linear(784, 64)`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: SeededGenerator? = nil) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear(\(inFeatures), \(outFeatures)): sizes must be positive")
        self.outFeatures = outFeatures
        self.hasBias = bias
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        super.init()
        materialize(inFeatures: inFeatures)
    }

    /// Lazy form: the input size is taken from the first input (Keras' `Dense(64)`).
    public init(outFeatures: Int, bias: Bool = true, generator: SeededGenerator? = nil) {
        precondition(outFeatures > 0, "Linear(outFeatures: \(outFeatures)): size must be positive")
        self.outFeatures = outFeatures
        self.hasBias = bias
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        super.init()
    }

    private func materialize(inFeatures: Int) {
        self.inFeatures = inFeatures
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = Parameter(.randomUniform([outFeatures, inFeatures], lower: -bound, upper: bound, using: &generator))
        if hasBias { bias = Parameter(.randomUniform([outFeatures], lower: -bound, upper: bound, using: &generator)) }
    }

    public override func build(inputShape: [Int]) -> [Int] {
        precondition(inputShape.count == 2, "Linear expects input (batch, features), got shape \(inputShape)")
        if let inFeatures {
            precondition(inputShape[1] == inFeatures, "Linear(\(inFeatures) → \(outFeatures)) got input shape \(inputShape)")
        } else {
            materialize(inFeatures: inputShape[1])
        }
        return [inputShape[0], outFeatures]
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        if inFeatures == nil { _ = build(inputShape: input.shape) }
        precondition(input.rank == 2 && input.shape[1] == inFeatures,
                     "\(description) expects input (batch, \(inFeatures!)), got shape \(input.shape)")
        return linear(input, weight: weight!.tensor, bias: bias?.tensor)
    }

    public override var description: String {
        "Linear(\(inFeatures.map(String.init) ?? "?") → \(outFeatures)\(hasBias ? "" : ", no bias"))"
    }
}

/// Keras spelling of a lazily built `Linear`: `Dense(64)`.
public func Dense(_ units: Int, useBias: Bool = true) -> Linear { Linear(outFeatures: units, bias: useBias) }
