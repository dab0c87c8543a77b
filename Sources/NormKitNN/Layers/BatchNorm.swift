import NormKitCore
import Synchronization

/// How batch normalization folds a batch's statistics into its running estimates.
///
/// Libraries disagree on what "momentum" means, so NormKit names the weight:
/// PyTorch's and MLX's `momentum=0.1` is `.newBatchWeight(0.1)`; Keras' and
/// Flax's `momentum=0.99` (and ONNX's 0.9) is `.oldValueWeight(0.99)`;
/// PyTorch's `momentum=None` is `.cumulativeAverage`.
public enum RunningAverage: Sendable, Equatable, CustomStringConvertible {
    /// running ← (1 − w)·running + w·batch.
    case newBatchWeight(Float)
    /// running ← m·running + (1 − m)·batch.
    case oldValueWeight(Float)
    /// running ← running + (batch − running)/t after t batches: the plain mean
    /// of every batch seen, counted in `numBatchesTracked`.
    case cumulativeAverage

    /// The weight of the new batch after `batchesTracked` batches (counting this one).
    func newBatchFactor(batchesTracked: Int) -> Double {
        switch self {
        case .newBatchWeight(let w): Double(w)
        case .oldValueWeight(let m): 1 - Double(m)
        case .cumulativeAverage: 1 / Double(batchesTracked)
        }
    }

    public var description: String {
        switch self {
        case .newBatchWeight(let w): "newBatchWeight(\(w))"
        case .oldValueWeight(let m): "oldValueWeight(\(m))"
        case .cumulativeAverage: "cumulativeAverage"
        }
    }
}

/// Errors a batch-norm layer throws for input it cannot normalize.
public enum BatchNormError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Training-mode statistics need at least two values per channel.
    case singleValuePerChannel(layer: String, shape: [Int])

    public var description: String {
        switch self {
        case let .singleValuePerChannel(layer, shape):
            "\(layer): expected more than 1 value per channel when training, got input shape \(shape). "
                + "Batch statistics of one value are undefined (variance 0, output β). Drop the last partial batch "
                + "(fit(…, dropsLastPartialBatch: true)), evaluate in inference mode, or use a normalization "
                + "that does not depend on the batch (GroupNorm, LayerNorm)."
        }
    }
}

/// Batch normalization (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167).
///
/// Per feature c over every value that shares it (m = N, or N·L, or N·H·W):
/// y = γ·(x − μ)/√(σ² + ε) + β. In `.training` mode μ and σ² are the batch's
/// mean and biased variance, and the running estimates move toward them
/// (with the unbiased variance σ²·m/(m − 1) by default, as in the paper's
/// Algorithm 2 and PyTorch); in `.inference` mode the running estimates are
/// used. The forward is one autodiff node with a fused analytic pullback that
/// keeps only μ and 1/σ per feature.
///
/// Statistics are computed in two passes with Double accumulators and the
/// variance is clamped at 0, so inputs with |mean| ≫ std and constant
/// features stay exact. A batch whose statistics are not finite is never
/// folded into the running estimates; it is counted in `nonFiniteBatchCount`.
///
/// Parameter and buffer names follow PyTorch: `weight` (γ), `bias` (β),
/// `running_mean`, `running_var`, `num_batches_tracked`.
public class BatchNorm: Module {
    /// The axis that holds the features: 1 for channels-first (PyTorch), -1 for channels-last (Keras).
    public let featureAxis: Int
    public private(set) var featureCount: Int?
    public let epsilon: Float
    public let runningAverage: RunningAverage
    public let isAffine: Bool
    public let tracksRunningStatistics: Bool
    /// Whether the running variance stores the unbiased estimate (PyTorch) or the biased one (Keras, ONNX).
    public let storesUnbiasedVariance: Bool
    /// Ranks of input this layer accepts (nil: any rank ≥ 2).
    let acceptedRanks: Set<Int>?

    /// γ, `weight` in PyTorch, `gamma` in Keras. Initially 1.
    public private(set) var weight: Parameter?
    /// β, `bias` in PyTorch, `beta` in Keras. Initially 0.
    public private(set) var bias: Parameter?
    /// Running mean per feature; initially 0.
    public internal(set) var runningMean: Tensor?
    /// Running variance per feature; initially 1.
    public internal(set) var runningVariance: Tensor?
    /// Batches folded into the running estimates so far.
    public internal(set) var numBatchesTracked: Int = 0
    /// Training batches whose statistics were not finite and were left out of the running estimates.
    public private(set) var nonFiniteBatchCount: Int = 0
    /// The statistics of the last forward that used batch statistics (for inspection and tests).
    public private(set) var lastBatchStatistics: BatchNormStatistics?

    /// - Parameters:
    ///   - featureCount: features on `featureAxis`; nil to take it from the first input.
    ///   - epsilon: added to the variance before the square root; must be > 0.
    ///   - runningAverage: how running estimates follow the batches (PyTorch's momentum 0.1 by default).
    ///   - affine: whether γ and β exist and train.
    ///   - tracksRunningStatistics: when false, batch statistics are used in both modes.
    ///   - unbiasedRunningVariance: store σ²·m/(m − 1) (true, PyTorch) or σ² (false, Keras).
    public convenience init(featureCount: Int? = nil, featureAxis: Int = 1, epsilon: Float = 1e-5,
                runningAverage: RunningAverage = .newBatchWeight(0.1), affine: Bool = true,
                tracksRunningStatistics: Bool = true, unbiasedRunningVariance: Bool = true) {
        self.init(featureCount: featureCount, featureAxis: featureAxis, epsilon: epsilon, runningAverage: runningAverage,
                  affine: affine, tracksRunningStatistics: tracksRunningStatistics,
                  unbiasedRunningVariance: unbiasedRunningVariance, acceptedRanks: nil)
    }

    init(featureCount: Int?, featureAxis: Int, epsilon: Float, runningAverage: RunningAverage, affine: Bool,
         tracksRunningStatistics: Bool, unbiasedRunningVariance: Bool, acceptedRanks: Set<Int>?) {
        precondition(epsilon > 0, "BatchNorm: epsilon must be > 0, got \(epsilon)")
        switch runningAverage {
        case .newBatchWeight(let w): precondition(w >= 0 && w <= 1, "BatchNorm: newBatchWeight must be in [0, 1], got \(w)")
        case .oldValueWeight(let m): precondition(m >= 0 && m <= 1, "BatchNorm: oldValueWeight must be in [0, 1], got \(m)")
        case .cumulativeAverage: break
        }
        self.featureAxis = featureAxis
        self.epsilon = epsilon
        self.runningAverage = runningAverage
        self.isAffine = affine
        self.tracksRunningStatistics = tracksRunningStatistics
        self.storesUnbiasedVariance = unbiasedRunningVariance
        self.acceptedRanks = acceptedRanks
        super.init()
        if let featureCount { materialize(featureCount: featureCount) }
    }

    private func materialize(featureCount: Int) {
        precondition(featureCount > 0, "BatchNorm: featureCount must be positive, got \(featureCount)")
        self.featureCount = featureCount
        if isAffine {
            weight = Parameter(.ones([featureCount]), isTrainable: affineTrainableOverride ?? true)
            bias = Parameter(.zeros([featureCount]), isTrainable: affineTrainableOverride ?? true)
        }
        if tracksRunningStatistics {
            runningMean = .zeros([featureCount])
            runningVariance = .ones([featureCount])
        }
    }

    private func checkShape(_ shape: [Int]) {
        if let acceptedRanks {
            precondition(acceptedRanks.contains(shape.count),
                         "\(description) expects input of rank \(acceptedRanks.sorted().map(String.init).joined(separator: " or ")), got shape \(shape)")
        }
        precondition(shape.count >= 2, "\(description) expects input (batch, features, …), got shape \(shape)")
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        precondition(axis >= 0 && axis < shape.count, "\(description): feature axis \(featureAxis) is outside shape \(shape)")
        if let featureCount {
            precondition(shape[axis] == featureCount,
                         "\(description) expects \(featureCount) features on axis \(featureAxis), got shape \(shape)")
        }
    }

    public override func build(inputShape: [Int]) -> [Int] {
        checkShape(inputShape)
        if featureCount == nil {
            let axis = featureAxis < 0 ? featureAxis + inputShape.count : featureAxis
            materialize(featureCount: inputShape[axis])
        }
        return inputShape
    }

    // MARK: Controls
    //
    // Three independent controls, each defaulting to "follow the mode":
    //
    // | control | .followMode (default) | override |
    // |---|---|---|
    // | `statistics` | batch in training, running in inference | `.batch` or `.running` always |
    // | `runningStatisticsUpdates` | update in training (when batch statistics are used) | `.never` |
    // | `areAffineParametersTrainable` | true | false: γ and β get no gradient and optimizers skip them |
    //
    // `freeze()` sets all three for fine-tuning (running statistics, no updates,
    // γ/β fixed). Because they are separate from `mode`, a frozen layer stays
    // frozen when the model is switched back to training — unlike Keras, where
    // `trainable = False` silently means inference, and PyTorch, where
    // `requires_grad = False` still updates the running statistics.

    /// Which statistics normalize the input.
    public enum StatisticsChoice: Sendable, Equatable {
        case followMode, batch, running
    }

    /// Whether training-mode forwards fold batch statistics into the running estimates.
    public enum RunningStatisticsUpdates: Sendable, Equatable {
        case followMode, never
    }

    /// Which statistics normalize the input (see the table above).
    public var statistics: StatisticsChoice = .followMode {
        didSet {
            precondition(statistics != .running || tracksRunningStatistics,
                         "\(description): running statistics were requested but the layer does not track them")
        }
    }

    /// Whether running estimates are updated (see the table above).
    public var runningStatisticsUpdates: RunningStatisticsUpdates = .followMode

    /// Whether γ and β train.
    public var areAffineParametersTrainable: Bool {
        get { weight?.isTrainable ?? false }
        set {
            weight?.isTrainable = newValue
            bias?.isTrainable = newValue
            affineTrainableOverride = newValue
        }
    }
    private var affineTrainableOverride: Bool?

    /// Fine-tuning mode: normalize with the running statistics, never update them,
    /// and keep γ and β fixed, whatever `mode` the model is switched to.
    public func freeze() {
        precondition(tracksRunningStatistics, "\(description): freeze() needs running statistics to normalize with")
        statistics = .running
        runningStatisticsUpdates = .never
        areAffineParametersTrainable = false
    }

    /// Undoes `freeze()`: every control follows the mode again and γ, β train.
    public func unfreeze() {
        statistics = .followMode
        runningStatisticsUpdates = .followMode
        areAffineParametersTrainable = true
    }

    /// Whether this forward normalizes with the batch's statistics.
    var usesBatchStatistics: Bool {
        if !tracksRunningStatistics { return true }
        switch statistics {
        case .batch: return true
        case .running: return false
        case .followMode: return mode == .training
        }
    }

    /// Whether this forward updates the running estimates.
    var updatesRunningStatistics: Bool {
        tracksRunningStatistics && usesBatchStatistics && mode == .training && runningStatisticsUpdates == .followMode
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        _ = build(inputShape: input.shape)
        let layout = FeatureLayout(shape: input.shape, featureAxis: featureAxis)
        if usesBatchStatistics {
            guard layout.outer * layout.inner > 1 else {
                throw BatchNormError.singleValuePerChannel(layer: description, shape: input.shape)
            }
            let (output, statistics) = batchNorm(input, featureAxis: featureAxis, gamma: weight?.tensor,
                                                 beta: bias?.tensor, epsilon: epsilon)
            lastBatchStatistics = statistics
            if updatesRunningStatistics { updateRunningStatistics(with: statistics) }
            return output
        }
        let given = (mean: runningMean!.scalars, variance: runningVariance!.scalars)
        return batchNorm(input, featureAxis: featureAxis, gamma: weight?.tensor, beta: bias?.tensor,
                         epsilon: epsilon, using: given).output
    }

    private func updateRunningStatistics(with statistics: BatchNormStatistics) {
        guard statistics.isFinite else {
            nonFiniteBatchCount += 1
            BatchNorm.warnOnce("warning: \(description) saw a batch with non-finite statistics (NaN or ∞ in the input); "
                               + "it was left out of the running mean and variance (nonFiniteBatchCount counts such batches).")
            return
        }
        numBatchesTracked += 1
        let factor = runningAverage.newBatchFactor(batchesTracked: numBatchesTracked)
        let m = Double(statistics.count)
        let correction = storesUnbiasedVariance && m > 1 ? m / (m - 1) : 1
        runningMean!.withUnsafeMutableBufferPointer { mean in
            runningVariance!.withUnsafeMutableBufferPointer { variance in
                for c in mean.indices {
                    mean[c] = Float((1 - factor) * Double(mean[c]) + factor * Double(statistics.mean[c]))
                    variance[c] = Float((1 - factor) * Double(variance[c]) + factor * Double(statistics.variance[c]) * correction)
                }
            }
        }
    }

    public override var description: String {
        let name = String(describing: type(of: self))
        return "\(name)(\(featureCount.map(String.init) ?? "?"), epsilon: \(epsilon), \(runningAverage)"
            + "\(featureAxis == 1 ? "" : ", featureAxis: \(featureAxis)"))"
    }

    private static let warned = Atomic<Bool>(false)
    static func warnOnce(_ message: String) {
        if !warned.exchange(true, ordering: .relaxed) { printToStandardError(message) }
    }
}

/// Batch norm over (N, C) or (N, C, L), PyTorch's `nn.BatchNorm1d` (ε 1e-5, momentum 0.1).
public final class BatchNorm1d: BatchNorm {
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = true, tracksRunningStatistics: Bool = true) {
        super.init(featureCount: featureCount, featureAxis: 1, epsilon: epsilon, runningAverage: runningAverage,
                   affine: affine, tracksRunningStatistics: tracksRunningStatistics, unbiasedRunningVariance: true,
                   acceptedRanks: [2, 3])
    }
}

/// Keras' `layers.BatchNormalization`: features on the last axis, ε 1e-3,
/// momentum 0.99 weighting the old value, biased moving variance; the feature
/// count comes from the first input.
public func BatchNormalization(axis: Int = -1, momentum: Float = 0.99, epsilon: Float = 1e-3,
                               center: Bool = true, scale: Bool = true) -> BatchNorm {
    precondition(center == scale, "BatchNormalization: NormKit supports center and scale together (both on or both off)")
    return BatchNorm(featureCount: nil, featureAxis: axis, epsilon: epsilon, runningAverage: .oldValueWeight(momentum),
                     affine: center, tracksRunningStatistics: true, unbiasedRunningVariance: false)
}
