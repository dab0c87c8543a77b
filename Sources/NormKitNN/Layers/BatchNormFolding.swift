import NormKitCore

// Folding an inference-mode batch norm into the layer before it.
//
// In inference a batch norm is a per-feature affine map,
// y ↦ y·s + t with s = γ/√(running variance + ε) and t = β − running mean·s.
// When the layer before it is affine in its output features (Linear, and
// Conv2D), the map can be moved into that layer's weights:
// for Linear, W' = diag(s)·W and b' = (b − μ)·s + β = b·s + t. The folded model
// computes the same outputs with one layer fewer.

/// y ↦ y·scale + shift per feature: what an inference-mode batch norm computes.
public struct PerFeatureAffineMap: Sendable, Equatable {
    /// s per feature, in Double so that folding rounds the folded weights once.
    public var scale: [Double]
    /// t per feature.
    public var shift: [Double]

    public init(scale: [Double], shift: [Double]) {
        precondition(scale.count == shift.count, "PerFeatureAffineMap: \(scale.count) scales, \(shift.count) shifts")
        self.scale = scale
        self.shift = shift
    }
}

extension PerFeatureAffineMap {
    /// The weights and bias of a layer whose weight has the output features on its
    /// first axis (Linear's (out, in), Conv2D's (out, in/groups, kH, kW)), with this
    /// map folded in: W' = scale·W per output feature, b' = b·scale + shift (b = 0
    /// without a bias), computed in Double and rounded once.
    func folded(intoWeight weight: Tensor, bias: Tensor?) -> (weight: Tensor, bias: Tensor) {
        let features = scale.count, perFeature = weight.scalarCount / features
        let oldWeight = weight.scalars, oldBias = bias?.scalars
        let newWeight = oldWeight.indices.map { Float(Double(oldWeight[$0]) * scale[$0 / perFeature]) }
        let newBias = (0..<features).map { Float(Double(oldBias?[$0] ?? 0) * scale[$0] + shift[$0]) }
        return (Tensor(newWeight, shape: weight.shape), Tensor(newBias))
    }
}

/// A layer whose outputs are affine in its parameters per output feature, so
/// that a per-feature map y ↦ y·s + t applied after it can be folded into it.
///
/// Conforming layers say where their output features are; the folding code
/// (`foldingBatchNorm(_:)`, `Sequential.foldingBatchNorms()`) is the same for all.
public protocol BatchNormFoldable: Module {
    /// The rank of the layer's output (2 for Linear, 4 for Conv2D).
    var foldableOutputRank: Int { get }
    /// The axis of the output that holds the output features, in 0..<foldableOutputRank.
    var foldableOutputFeatureAxis: Int { get }
    /// The number of output features, or nil while the layer is not built.
    var foldableOutputFeatureCount: Int? { get }
    /// A new layer computing self(x)·map.scale + map.shift per output feature.
    /// `self` is left unchanged.
    func folding(_ map: PerFeatureAffineMap) -> Module
}

/// Why a batch norm cannot be folded into the layer before it.
public enum BatchNormFoldingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The layer is in training mode, where it normalizes with the batch (folding makes an inference model).
    case trainingMode(layer: String)
    /// The layer keeps no running statistics: it normalizes with each batch's own, which no constant map reproduces.
    case untrackedRunningStatistics(layer: String)
    /// The layer is set to normalize with batch statistics (`statistics = .batch`) even in inference.
    case batchStatistics(layer: String)
    /// The batch norm or the layer before it has not seen an input yet, so it has no parameters.
    case notBuilt(layer: String)
    /// The batch norm normalizes another axis, or another number of features, than the layer's outputs have.
    case featureMismatch(layer: String, batchNorm: String)

    public var description: String {
        switch self {
        case let .trainingMode(layer):
            "cannot fold \(layer): it is in training mode, where it normalizes with batch statistics. "
                + "Folding builds an inference model: call eval() (or setMode(.inference)) on the model first."
        case let .untrackedRunningStatistics(layer):
            "cannot fold \(layer): it does not track running statistics, so it normalizes every batch with that "
                + "batch's own statistics in inference too, which no fixed weights reproduce."
        case let .batchStatistics(layer):
            "cannot fold \(layer): its statistics control is .batch, so it normalizes with batch statistics in "
                + "inference; set statistics = .followMode (or .running) to fold it."
        case let .notBuilt(layer):
            "cannot fold with \(layer): it has not seen an input yet, so its parameters do not exist."
        case let .featureMismatch(layer, batchNorm):
            "cannot fold \(batchNorm) into \(layer): it does not normalize that layer's output features."
        }
    }
}

extension BatchNorm {
    /// The per-feature map this layer computes in inference:
    /// s = γ/√(running variance + ε), t = β − running mean·s (γ = 1, β = 0 without affine).
    /// A layer set to normalize with its running estimates in both modes (`statistics = .running`,
    /// as `freeze()` sets) computes this map in training mode too, so it folds in either mode.
    ///
    /// - Throws: `BatchNormFoldingError` when the layer is in training mode (and not set to
    ///   `statistics = .running`), does not
    ///   track running statistics, is set to normalize with batch statistics, or is not built.
    public func inferenceAffineMap() throws(BatchNormFoldingError) -> PerFeatureAffineMap {
        guard tracksRunningStatistics else { throw .untrackedRunningStatistics(layer: description) }
        guard mode == .inference || statistics == .running else { throw .trainingMode(layer: description) }
        guard statistics != .batch else { throw .batchStatistics(layer: description) }
        guard let runningMean, let runningVariance else { throw .notBuilt(layer: description) }
        let mean = runningMean.scalars, variance = runningVariance.scalars
        let gamma = weight?.value.scalars, beta = bias?.value.scalars
        var scale = [Double](repeating: 0, count: mean.count), shift = [Double](repeating: 0, count: mean.count)
        for c in mean.indices {
            scale[c] = Double(gamma?[c] ?? 1) / (Double(variance[c]) + Double(epsilon)).squareRoot()
            shift[c] = Double(beta?[c] ?? 0) - Double(mean[c]) * scale[c]
        }
        return PerFeatureAffineMap(scale: scale, shift: shift)
    }
}

extension BatchNormFoldable {
    /// A new layer computing `batchNorm(self(x))` as it is in inference.
    ///
    /// - Throws: `BatchNormFoldingError` when the batch norm cannot be folded
    ///   (training mode, untracked or batch statistics, not built, or features that do not match).
    public func foldingBatchNorm(_ batchNorm: BatchNorm) throws(BatchNormFoldingError) -> Module {
        guard let features = foldableOutputFeatureCount else { throw .notBuilt(layer: description) }
        let axis = batchNorm.featureAxis < 0 ? batchNorm.featureAxis + foldableOutputRank : batchNorm.featureAxis
        guard axis == foldableOutputFeatureAxis, batchNorm.featureCount.map({ $0 == features }) ?? true else {
            throw .featureMismatch(layer: description, batchNorm: batchNorm.description)
        }
        let map = try batchNorm.inferenceAffineMap()
        guard map.scale.count == features else {
            throw .featureMismatch(layer: description, batchNorm: batchNorm.description)
        }
        return folding(map)
    }
}

extension Sequential {
    /// An inference model with every batch norm that directly follows a
    /// `BatchNormFoldable` layer (Linear, Conv2D) folded into it.
    ///
    /// The outputs equal this model's in inference up to Float rounding (the
    /// folded weights are computed in Double and rounded once). Nested
    /// `Sequential`s are folded too. Layers that are not folded are shared with
    /// this model, not copied (layers are references); folded layers are new.
    /// The result is in inference mode.
    ///
    /// - Throws: `BatchNormFoldingError` for the first foldable pair whose batch
    ///   norm is in training mode, keeps no running statistics, normalizes with
    ///   batch statistics, or does not match the layer's output features.
    public func foldingBatchNorms() throws(BatchNormFoldingError) -> Sequential {
        var folded: [Module] = []
        var index = layers.startIndex
        while index < layers.endIndex {
            let layer = layers[index]
            let next = layers.index(after: index)
            if let foldable = layer as? any BatchNormFoldable, next < layers.endIndex,
               let batchNorm = layers[next] as? BatchNorm {
                folded.append(try foldable.foldingBatchNorm(batchNorm))
                index = layers.index(after: next)
                continue
            }
            folded.append(try (layer as? Sequential)?.foldingBatchNorms() ?? layer)
            index = next
        }
        let model = Sequential(folded)
        model.setMode(.inference)
        return model
    }
}
