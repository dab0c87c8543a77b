import NormKitCore

/// A fully connected layer: y = x · Wᵀ + b (PyTorch's `nn.Linear`, Keras' `Dense`).
///
/// Shapes: input (batch, inFeatures) → output (batch, outFeatures). The weight
/// is stored (outFeatures, inFeatures), PyTorch's layout, so state dicts move
/// between the two unchanged. `Linear` initialises as PyTorch does: W and b
/// uniform in ±1/√inFeatures. `Dense(units)` initialises as Keras does (see
/// `KernelInitializer`). When `inFeatures` is not given (`Linear(outFeatures:)`,
/// `Dense(64)`) the parameters are created by `build(inputShape:)` or the first
/// forward pass, from the generator the layer was given or seeded with when made.
public final class Linear: Module {
    public let outFeatures: Int
    public private(set) var inFeatures: Int?
    public private(set) var weight: Parameter?
    public private(set) var bias: Parameter?
    private let hasBias: Bool
    private var generator: SeededGenerator
    /// How `materialize` draws the parameters: `.pyTorchDefault` for every `Linear` initializer, Dense's choice otherwise.
    private let initializer: KernelInitializer

    /// PyTorch spelling: `Linear(784, 64)`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: SeededGenerator? = nil) {
        precondition(inFeatures > 0 && outFeatures > 0, "Linear(\(inFeatures), \(outFeatures)): sizes must be positive")
        self.outFeatures = outFeatures
        self.hasBias = bias
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        self.initializer = .pyTorchDefault
        super.init()
        materialize(inFeatures: inFeatures)
    }

    /// Lazy form: the input size is taken from the first input (PyTorch's `nn.LazyLinear`).
    public convenience init(outFeatures: Int, bias: Bool = true, generator: SeededGenerator? = nil) {
        self.init(outFeatures: outFeatures, bias: bias, generator: generator, initializer: .pyTorchDefault)
    }

    /// Lazy form with a chosen initializer (what `Dense` builds).
    init(outFeatures: Int, bias: Bool, generator: SeededGenerator?, initializer: KernelInitializer) {
        precondition(outFeatures > 0, "Linear(outFeatures: \(outFeatures)): size must be positive")
        self.outFeatures = outFeatures
        self.hasBias = bias
        // Drawn now, not at build time, so the layer's weights depend on when it was made
        // (GlobalRandom's sequence), not on when its first input arrives.
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        self.initializer = initializer
        super.init()
    }

    /// A layer with the given weight (outFeatures, inFeatures) and bias (outFeatures) or none.
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2 && weight.shape.allSatisfy { $0 > 0 },
                     "Linear(weight:bias:): weight must be (outFeatures, inFeatures), got shape \(weight.shape)")
        if let bias {
            precondition(bias.shape == [weight.shape[0]],
                         "Linear(weight:bias:): bias must be (\(weight.shape[0])), got shape \(bias.shape) for weight \(weight.shape)")
        }
        self.outFeatures = weight.shape[0]
        self.inFeatures = weight.shape[1]
        self.hasBias = bias != nil
        self.generator = SeededGenerator(seed: 0)   // never drawn from: the parameters exist
        self.initializer = .pyTorchDefault
        self.weight = Parameter(weight)
        self.bias = bias.map { Parameter($0) }
        super.init()
    }

    private func materialize(inFeatures: Int) {
        self.inFeatures = inFeatures
        switch initializer {
        case .pyTorchDefault:
            let bound = 1 / Float(inFeatures).squareRoot()
            weight = Parameter(.randomUniform([outFeatures, inFeatures], lower: -bound, upper: bound, using: &generator))
            if hasBias { bias = Parameter(.randomUniform([outFeatures], lower: -bound, upper: bound, using: &generator)) }
        case .glorotUniform:
            // The limit is symmetric in the two fans, so Keras' (in, out) kernel and this
            // (out, in) weight have the same one: storing the transpose changes nothing.
            let limit = Float((6 / Double(inFeatures + outFeatures)).squareRoot())
            weight = Parameter(.randomUniform([outFeatures, inFeatures], lower: -limit, upper: limit, using: &generator))
            if hasBias { bias = Parameter(.zeros([outFeatures])) }
        }
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

    /// Builds an unbuilt `Dense(units)` from a `weight` of shape (units, inFeatures).
    public override func buildForLoading(entryShapes shapes: [String: [Int]]) -> (() -> Void)? {
        guard inFeatures == nil, let shape = shapes["weight"], shape.count == 2, shape[0] == outFeatures, shape[1] > 0
        else { return nil }
        let unusedGenerator = generator
        materialize(inFeatures: shape[1])
        return { [self] in
            inFeatures = nil
            weight = nil
            bias = nil
            generator = unusedGenerator
        }
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

extension Linear: BatchNormFoldable {
    public var foldableOutputRank: Int { 2 }
    public var foldableOutputFeatureAxis: Int { 1 }
    public var foldableOutputFeatureCount: Int? { inFeatures == nil ? nil : outFeatures }

    /// A new Linear with W' = diag(s)·W and b' = b·s + t (computed in Double,
    /// rounded once); it always has a bias, since t is not 0 in general.
    public func folding(_ map: PerFeatureAffineMap) -> Module {
        precondition(map.scale.count == outFeatures,
                     "\(description): cannot fold a map of \(map.scale.count) features into \(outFeatures) outputs")
        let folded = map.folded(intoWeight: weight!.value, bias: bias?.value)
        return Linear(weight: folded.weight, bias: folded.bias)
    }
}

/// How `Dense` draws its initial parameters (Keras' `kernel_initializer`).
public enum KernelInitializer: Sendable, Equatable {
    /// Keras' default for `Dense`: the weight uniform in ±√(6 / (fanIn + fanOut)), so that
    /// the variance of activations and of gradients is kept through the layer (Glorot &
    /// Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    /// networks"); the bias starts at 0 (Keras' `bias_initializer="zeros"`).
    case glorotUniform
    /// PyTorch's `nn.Linear`: weight and bias uniform in ±1/√fanIn, what every `Linear(…)` initializer uses.
    case pyTorchDefault
}

/// Keras spelling of a lazily built `Linear`: `Dense(64)`, initialised as Keras'
/// `Dense` is (`kernelInitializer: .glorotUniform`: Glorot-uniform weight, zero bias)
/// when its input size is known: at `Sequential(inputShape:)`, `build(inputShape:)`
/// or the first forward pass. The draw comes from a generator seeded from
/// `GlobalRandom` when `Dense` is called, so `GlobalRandom.seed(_:)` makes it repeatable.
/// Pass `kernelInitializer: .pyTorchDefault` for `Linear`'s initialisation.
public func Dense(_ units: Int, useBias: Bool = true, kernelInitializer: KernelInitializer = .glorotUniform) -> Linear {
    Linear(outFeatures: units, bias: useBias, generator: nil, initializer: kernelInitializer)
}
