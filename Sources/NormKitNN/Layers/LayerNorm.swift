import NormKitCore

/// Layer normalization (Ba, Kiros & Hinton 2016, https://arxiv.org/abs/1607.06450),
/// PyTorch's `nn.LayerNorm`.
///
/// Every sample is normalized over its trailing dims `normalizedShape`:
/// for input (…, D₁, …, D_k) with `normalizedShape` = [D₁, …, D_k], each
/// leading index gets its own mean μ and biased variance σ² over the
/// D₁·…·D_k values, and y = γ ⊙ (x − μ)/√(σ² + ε) + β with γ (`weight`) and
/// β (`bias`) shaped like `normalizedShape`, applied elementwise. The output
/// has the input's shape.
///
/// No statistic crosses the batch, so the layer computes the same in
/// `.training` and `.inference` mode, for any batch size (even 1), and keeps
/// no running estimates. Statistics are two-pass with Double accumulators and
/// the variance is clamped at 0 (exact for |mean| ≫ std; a constant row gives
/// exactly β). The forward is one autodiff node whose fused pullback keeps
/// only μ and 1/σ per row.
///
/// Parameter names follow PyTorch: `weight`, `bias`.
public final class LayerNorm: Module {
    /// The trailing dims normalized together; nil until the first input when
    /// built lazily by the Keras spelling `LayerNormalization()`.
    public private(set) var normalizedShape: [Int]?
    /// How many trailing axes are normalized.
    public let normalizedAxisCount: Int
    public let epsilon: Float
    /// Whether γ (`weight`) exists and trains.
    public let hasWeight: Bool
    /// Whether β (`bias`) exists and trains.
    public let hasBias: Bool

    /// γ, shaped like `normalizedShape`. Initially 1.
    public private(set) var weight: Parameter?
    /// β, shaped like `normalizedShape`. Initially 0.
    public private(set) var bias: Parameter?

    /// - Parameters:
    ///   - normalizedShape: the trailing dims to normalize over (PyTorch's `normalized_shape`).
    ///   - epsilon: added to the variance before the square root; must be > 0.
    ///   - elementwiseAffine: whether γ (and β, see `bias`) exist and train.
    ///   - bias: whether β exists when `elementwiseAffine` is true (PyTorch ≥ 2.1's `bias=`).
    public convenience init(normalizedShape: [Int], epsilon: Float = 1e-5, elementwiseAffine: Bool = true,
                            bias: Bool = true) {
        precondition(!normalizedShape.isEmpty && normalizedShape.allSatisfy { $0 > 0 },
                     "LayerNorm: normalizedShape must be non-empty with positive dims, got \(normalizedShape)")
        self.init(normalizedShape: normalizedShape, normalizedAxisCount: normalizedShape.count, epsilon: epsilon,
                  hasWeight: elementwiseAffine, hasBias: elementwiseAffine && bias)
    }

    /// LayerNorm over the last axis of `featureCount` features (PyTorch's `nn.LayerNorm(64)`).
    public convenience init(_ featureCount: Int, epsilon: Float = 1e-5, elementwiseAffine: Bool = true,
                            bias: Bool = true) {
        self.init(normalizedShape: [featureCount], epsilon: epsilon, elementwiseAffine: elementwiseAffine, bias: bias)
    }

    init(normalizedShape: [Int]?, normalizedAxisCount: Int, epsilon: Float, hasWeight: Bool, hasBias: Bool) {
        precondition(epsilon > 0, "LayerNorm: epsilon must be > 0, got \(epsilon)")
        self.normalizedAxisCount = normalizedAxisCount
        self.epsilon = epsilon
        self.hasWeight = hasWeight
        self.hasBias = hasBias
        super.init()
        if let normalizedShape { materialize(normalizedShape: normalizedShape) }
    }

    private func materialize(normalizedShape: [Int]) {
        self.normalizedShape = normalizedShape
        if hasWeight { weight = Parameter(.ones(normalizedShape)) }
        if hasBias { bias = Parameter(.zeros(normalizedShape)) }
    }

    /// Builds an unbuilt `LayerNormalization()` from the shape of its `weight` or `bias`.
    public override func buildForLoading(entryShapes shapes: [String: [Int]]) -> (() -> Void)? {
        guard normalizedShape == nil, let shape = shapes["weight"] ?? shapes["bias"],
              shape.count == normalizedAxisCount, shape.allSatisfy({ $0 > 0 })
        else { return nil }
        materialize(normalizedShape: shape)
        return { [self] in
            normalizedShape = nil
            weight = nil
            bias = nil
        }
    }

    public override func build(inputShape: [Int]) -> [Int] {
        if normalizedShape == nil {
            precondition(inputShape.count >= normalizedAxisCount,
                         "\(description) expects input with at least \(normalizedAxisCount) axes, got shape \(inputShape)")
            materialize(normalizedShape: Array(inputShape.suffix(normalizedAxisCount)))
        }
        let expected = normalizedShape!
        precondition(inputShape.count >= expected.count && Array(inputShape.suffix(expected.count)) == expected,
                     "\(description) expects input of shape [*, \(expected.map(String.init).joined(separator: ", "))], "
                     + "got shape \(inputShape)")
        return inputShape
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        _ = build(inputShape: input.shape)
        let layout = GroupNormLayout.layerNorm(shape: input.shape, normalizedShape: normalizedShape!)
        return groupNorm(input, layout: layout, gamma: weight?.tensor, beta: bias?.tensor, epsilon: epsilon).output
    }

    public override var description: String {
        let shape = normalizedShape.map { "\($0)" } ?? "last \(normalizedAxisCount) axes"
        var options = ["epsilon: \(epsilon)"]
        if !hasWeight && !hasBias { options.append("elementwiseAffine: false") }
        else if !hasBias { options.append("bias: false") }
        else if !hasWeight { options.append("scale: false") }
        return "LayerNorm(\(shape), \(options.joined(separator: ", ")))"
    }
}

/// Keras' `layers.LayerNormalization`: normalizes each sample over its last
/// axis with ε 1e-3; γ (`scale`) and β (`center`) have one value per feature
/// and are created from the first input. Only `axis: -1` is supported (Keras'
/// default); for several trailing axes use `LayerNorm(normalizedShape:)`.
/// The parameters are named `weight` and `bias` (Keras: `gamma`, `beta`).
public func LayerNormalization(axis: Int = -1, epsilon: Float = 1e-3, center: Bool = true,
                               scale: Bool = true) -> LayerNorm {
    precondition(axis == -1, "LayerNormalization: only axis -1 (the last axis) is supported, got \(axis); "
                 + "use LayerNorm(normalizedShape:) for several trailing axes")
    return LayerNorm(normalizedShape: nil, normalizedAxisCount: 1, epsilon: epsilon, hasWeight: scale, hasBias: center)
}
