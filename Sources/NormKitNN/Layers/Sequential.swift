import NormKitCore

/// Builds a `Sequential`'s layer list with Swift's result-builder syntax.
@resultBuilder
public enum LayerBuilder {
    public static func buildExpression(_ layer: Module) -> [Module] { [layer] }
    public static func buildBlock(_ parts: [Module]...) -> [Module] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [Module]?) -> [Module] { part ?? [] }
    public static func buildEither(first part: [Module]) -> [Module] { part }
    public static func buildEither(second part: [Module]) -> [Module] { part }
    public static func buildArray(_ parts: [[Module]]) -> [Module] { parts.flatMap { $0 } }
}

/// Layers applied one after another (Keras' `Sequential`, PyTorch's `nn.Sequential`).
///
/// Sub-modules are named by position ("0", "1", …), as in PyTorch's
/// `nn.Sequential`, so a state dict moves between the two unchanged. With an
/// `inputShape` (without the batch axis, as in Keras) every layer is built at
/// once, so parameters exist before `compile`, and the model starts in
/// `.inference` mode, as a Keras model called outside `fit` runs with
/// `training=False`; without one it starts in `.training`, as `nn.Sequential` does.
public final class Sequential: Module {
    public let layers: [Module]

    public init(_ layers: [Module]) {
        self.layers = layers
        super.init()
    }

    public convenience init(@LayerBuilder _ content: () -> [Module]) {
        self.init(content())
    }

    /// The layers named by position, as `nn.Sequential` names them ("0.weight", not "layers.0.weight").
    public override func namedChildren() -> [(String, Module)] {
        layers.enumerated().map { (String($0.offset), $0.element) }
    }

    /// Keras' `Sequential([Input(inputShape), …])`: builds every layer for inputs of
    /// `inputShape` (without the batch axis) and starts in `.inference` mode, so that
    /// `model(x)` outside `fit` uses batch norm's running statistics without updating
    /// them and switches dropout off, as Keras does. `fit` and `trainOnBatch` train in
    /// `.training` and return the model to `.inference`; `train()` opts into PyTorch's rule.
    public convenience init(inputShape: [Int], @LayerBuilder _ content: () -> [Module]) {
        self.init(content())
        _ = build(inputShape: [1] + inputShape)
        setMode(.inference)
    }

    public override func build(inputShape: [Int]) -> [Int] {
        layers.reduce(inputShape) { shape, layer in layer.build(inputShape: shape) }
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        try layers.reduce(input) { x, layer in try layer(x) }
    }

    public override var description: String { "Sequential(\(layers.count) layers)" }
}
