import NormKitCore

/// Inverted dropout (PyTorch's `nn.Dropout`, Keras' `Dropout`).
///
/// In `.training` mode each value is zeroed with probability `probability` and the others are
/// scaled by 1/(1 − p), so the expected output is the input; in `.inference` mode the layer is
/// the identity. Masks come from the layer's own generator, seeded from `GlobalRandom` when the
/// layer is created (or given), so a seeded run drops the same values every time.
/// Shapes: any → the same.
public final class Dropout: Module {
    public let probability: Float
    private var generator: SeededGenerator

    /// - Parameters:
    ///   - probability: the chance that a value is zeroed, in [0, 1] (PyTorch's `p`, Keras' `rate`).
    ///   - generator: where masks come from (default: seeded from `GlobalRandom`).
    public init(_ probability: Float = 0.5, generator: SeededGenerator? = nil) {
        precondition(probability >= 0 && probability <= 1, "Dropout: probability \(probability) is outside [0, 1]")
        self.probability = probability
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        super.init()
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        guard mode == .training, probability > 0 else { return input }
        return dropout(input, probability: probability, generator: &generator)
    }

    public override var description: String { "Dropout(\(probability))" }
}
