import NormKitCore

/// A 2-d convolution over NCHW images (PyTorch's `nn.Conv2d`).
///
/// Shapes: input (N, inChannels, H, W) → output (N, outChannels, oH, oW) with
/// oH = ⌊(H + 2·padding − dilation·(kH − 1) − 1)/stride⌋ + 1 (same for W).
/// Parameters use PyTorch's names and layouts: `weight` (outChannels, inChannels/groups, kH, kW)
/// and `bias` (outChannels), so state dicts move between the two unchanged. Initialisation
/// follows PyTorch (Kaiming-uniform with a = √5): weight and bias uniform in ±1/√fanIn,
/// fanIn = (inChannels/groups)·kH·kW, drawn from a generator seeded from `GlobalRandom`.
public final class Conv2D: Module {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Size2D
    public let stride: Size2D
    public let padding: Size2D
    public let dilation: Size2D
    public let groups: Int
    public let weight: Parameter
    public let bias: Parameter?

    /// PyTorch spelling: `Conv2D(1, 32, kernelSize: 3, padding: 1)`.
    ///
    /// - Parameters:
    ///   - kernelSize, stride, padding, dilation: `3` for (3, 3) or `[3, 5]` for (height, width).
    ///   - groups: channel groups; each sees inChannels/groups inputs and makes outChannels/groups outputs.
    ///   - bias: whether the layer adds a learned bias per output channel.
    ///   - generator: where the initial weights come from (default: seeded from `GlobalRandom`).
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Size2D, stride: Size2D = 1, padding: Size2D = 0,
                dilation: Size2D = 1, groups: Int = 1, bias: Bool = true, generator: SeededGenerator? = nil) {
        precondition(inChannels > 0 && outChannels > 0,
                     "Conv2D(\(inChannels), \(outChannels)): channel counts must be positive")
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2D(\(inChannels), \(outChannels)): groups \(groups) must divide both channel counts")
        precondition(kernelSize.height >= 1 && kernelSize.width >= 1, "Conv2D: kernelSize \(kernelSize) must be ≥ 1")
        var generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        let fanIn = inChannels / groups * kernelSize.height * kernelSize.width
        let bound = 1 / Float(fanIn).squareRoot()
        let weight = Tensor.randomUniform([outChannels, inChannels / groups, kernelSize.height, kernelSize.width],
                                          lower: -bound, upper: bound, using: &generator)
        let biasValues = bias ? Tensor.randomUniform([outChannels], lower: -bound, upper: bound, using: &generator) : nil
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.weight = Parameter(weight)
        self.bias = biasValues.map { Parameter($0) }
        super.init()
    }

    /// A convolution with the same configuration as `template` and the given values.
    init(configuredAs template: Conv2D, weight: Tensor, bias: Tensor?) {
        precondition(weight.shape == template.weight.shape,
                     "Conv2D: weight \(weight.shape) does not match \(template.weight.shape)")
        inChannels = template.inChannels
        outChannels = template.outChannels
        kernelSize = template.kernelSize
        stride = template.stride
        padding = template.padding
        dilation = template.dilation
        groups = template.groups
        self.weight = Parameter(weight)
        self.bias = bias.map { Parameter($0) }
        super.init()
    }

    private func geometry(forInputShape shape: [Int]) -> Conv2DGeometry {
        precondition(shape.count == 4 && shape[1] == inChannels,
                     "\(description) expects input (N, \(inChannels), H, W), got shape \(shape)")
        return Conv2DGeometry(batch: shape[0], inChannels: inChannels, outChannels: outChannels,
                              inputSize: Size2D(shape[2], shape[3]), kernelSize: kernelSize, stride: stride,
                              padding: padding, dilation: dilation, groups: groups)
    }

    public override func build(inputShape: [Int]) -> [Int] { geometry(forInputShape: inputShape).outputShape }

    public override func forward(_ input: Tensor) throws -> Tensor {
        _ = geometry(forInputShape: input.shape)
        return conv2D(input, weight: weight.tensor, bias: bias?.tensor, stride: stride, padding: padding,
                      dilation: dilation, groups: groups)
    }

    public override var description: String {
        var options = ["kernelSize: \(kernelSize)"]
        if stride != Size2D(1) { options.append("stride: \(stride)") }
        if padding != Size2D(0) { options.append("padding: \(padding)") }
        if dilation != Size2D(1) { options.append("dilation: \(dilation)") }
        if groups != 1 { options.append("groups: \(groups)") }
        if bias == nil { options.append("no bias") }
        return "Conv2D(\(inChannels) → \(outChannels), \(options.joined(separator: ", ")))"
    }
}

extension Conv2D: BatchNormFoldable {
    public var foldableOutputRank: Int { 4 }
    public var foldableOutputFeatureAxis: Int { 1 }
    public var foldableOutputFeatureCount: Int? { outChannels }

    /// A new convolution computing self(x)·s + t per output channel: with BN(y) = y·s + t
    /// (s = γ/√(σ² + ε), t = β − μ·s), W' = s·W per output channel and b' = b·s + t (b = 0
    /// without a bias), computed in Double and rounded once. The result always has a bias.
    public func folding(_ map: PerFeatureAffineMap) -> Module {
        precondition(map.scale.count == outChannels,
                     "\(description): cannot fold a map of \(map.scale.count) features into \(outChannels) channels")
        let folded = map.folded(intoWeight: weight.value, bias: bias?.value)
        return Conv2D(configuredAs: self, weight: folded.weight, bias: folded.bias)
    }
}

/// PyTorch spelling of `Conv2D`.
public typealias Conv2d = Conv2D
