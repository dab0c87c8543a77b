import NormKitCore

/// Errors an instance-norm layer throws for input it cannot normalize.
public enum InstanceNormError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Instance statistics need more than one position per (sample, channel).
    case singleSpatialElement(layer: String, shape: [Int])

    public var description: String {
        switch self {
        case let .singleSpatialElement(layer, shape):
            "\(layer): expected more than 1 spatial element per channel when normalizing with instance statistics, "
                + "got input shape \(shape). The statistics of one value are undefined (variance 0, output β). "
                + "Use a larger spatial size, running statistics (tracksRunningStatistics: true, inference mode), "
                + "or a normalization over more values (GroupNorm with fewer groups, LayerNorm)."
        }
    }
}

/// Instance normalization (Ulyanov, Vedaldi & Lempitsky 2016,
/// https://arxiv.org/abs/1607.08022), PyTorch's `nn.InstanceNorm1d/2d/3d`.
/// Use the subclasses; this base holds what they share.
///
/// Input (N, C, S…) with `spatialRank` spatial axes S…, or (C, S…) without
/// the batch axis (as PyTorch accepts). Every (n, c) is normalized by the mean
/// μ and biased variance σ² of its own ∏S positions:
/// y = γ[c]·(x − μ)/√(σ² + ε) + β[c], with per-channel γ (`weight`) and β
/// (`bias`) when `affine` (off by default, as in PyTorch). The output has the
/// input's shape.
///
/// By default (`tracksRunningStatistics: false`) instance statistics are used
/// in both modes and the layer is independent of the batch. With tracking, as
/// in PyTorch, `.training` normalizes with instance statistics and moves the
/// running estimates toward their batch averages — the mean of the N instance
/// means and the mean of the N unbiased instance variances σ²·∏S/(∏S − 1) —
/// while `.inference` normalizes every instance with the running estimates.
/// `runningAverage` is BatchNorm's: `.newBatchWeight(0.1)` is PyTorch's
/// default momentum. `.cumulativeAverage` averages every batch seen, counted
/// in `numBatchesTracked`; PyTorch's `momentum=None` instead never updates
/// instance-norm running estimates (its functional form passes momentum 0),
/// and PyTorch leaves `num_batches_tracked` at 0 for instance norm.
///
/// Statistics are two-pass with Double accumulators and the variance is
/// clamped at 0; the forward is one autodiff node whose fused pullback keeps
/// only μ and 1/σ per (n, c). A batch with non-finite statistics never enters
/// the running estimates (it is counted in `nonFiniteBatchCount`). Normalizing
/// with instance statistics a single position per channel throws
/// `InstanceNormError.singleSpatialElement`, as PyTorch raises.
///
/// Parameter and buffer names follow PyTorch: `weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`.
public class InstanceNorm: Module {
    public let featureCount: Int
    /// Spatial axes after (N, C): 1, 2 or 3.
    public let spatialRank: Int
    public let epsilon: Float
    public let runningAverage: RunningAverage
    /// Whether γ and β exist and train.
    public let isAffine: Bool
    public let tracksRunningStatistics: Bool

    /// γ per channel. Initially 1.
    public private(set) var weight: Parameter?
    /// β per channel. Initially 0.
    public private(set) var bias: Parameter?
    /// The running estimates, when tracked.
    var running: RunningStatistics?
    /// Running mean per channel when tracked; initially 0.
    public var runningMean: Tensor? { running?.mean }
    /// Running (unbiased) variance per channel when tracked; initially 1.
    public var runningVariance: Tensor? { running?.variance }
    /// Batches folded into the running estimates so far.
    public var numBatchesTracked: Int { running?.batchesTracked ?? 0 }
    /// Training batches whose statistics were not finite and were left out of the running estimates.
    public var nonFiniteBatchCount: Int { running?.nonFiniteBatches ?? 0 }

    init(featureCount: Int, spatialRank: Int, epsilon: Float, runningAverage: RunningAverage, affine: Bool,
         tracksRunningStatistics: Bool) {
        let name = "InstanceNorm\(spatialRank)d"
        precondition(featureCount > 0, "\(name): featureCount must be positive, got \(featureCount)")
        precondition(epsilon > 0, "\(name): epsilon must be > 0, got \(epsilon)")
        runningAverage.validate(layer: name)
        self.featureCount = featureCount
        self.spatialRank = spatialRank
        self.epsilon = epsilon
        self.runningAverage = runningAverage
        self.isAffine = affine
        self.tracksRunningStatistics = tracksRunningStatistics
        if affine {
            weight = Parameter(.ones([featureCount]))
            bias = Parameter(.zeros([featureCount]))
        }
        if tracksRunningStatistics { running = RunningStatistics(featureCount: featureCount) }
        super.init()
    }

    /// The kernels' view of `shape`, with or without the batch axis.
    private func layout(of shape: [Int]) -> GroupNormLayout {
        let batched = spatialRank + 2, unbatched = spatialRank + 1
        precondition(shape.count == batched || shape.count == unbatched,
                     "\(description) expects input (batch, \(featureCount), \(spatialRank) spatial axes) of rank "
                     + "\(batched), or rank \(unbatched) without the batch axis, got shape \(shape)")
        let channelAxis = shape.count == batched ? 1 : 0
        precondition(shape[channelAxis] == featureCount,
                     "\(description) expects \(featureCount) channels on axis \(channelAxis), got shape \(shape)")
        return GroupNormLayout(batch: shape.count == batched ? shape[0] : 1, groups: featureCount,
                               channelsPerGroup: 1, inner: shape.suffix(spatialRank).reduce(1, *))
    }

    public override func build(inputShape: [Int]) -> [Int] {
        _ = layout(of: inputShape)
        return inputShape
    }

    /// Whether this forward normalizes with the instances' own statistics.
    var usesInstanceStatistics: Bool { mode == .training || !tracksRunningStatistics }

    public override func forward(_ input: Tensor) throws -> Tensor {
        let layout = layout(of: input.shape)
        guard usesInstanceStatistics else {
            let mean = runningMean!.scalars, variance = runningVariance!.scalars
            let given = (mean: (0..<layout.batch).flatMap { _ in mean },
                         variance: (0..<layout.batch).flatMap { _ in variance })
            return groupNorm(input, layout: layout, gamma: weight?.tensor, beta: bias?.tensor, epsilon: epsilon,
                             using: given).output
        }
        guard layout.inner > 1 else {
            throw InstanceNormError.singleSpatialElement(layer: description, shape: input.shape)
        }
        let (output, statistics) = groupNorm(input, layout: layout, gamma: weight?.tensor, beta: bias?.tensor,
                                             epsilon: epsilon)
        if tracksRunningStatistics && mode == .training && layout.batch > 0 {
            updateRunningStatistics(with: statistics, batch: layout.batch)
        }
        return output
    }

    /// Folds the batch average of the instance statistics into the running
    /// estimates (PyTorch: the instance statistics of every sample, averaged).
    private func updateRunningStatistics(with statistics: GroupNormStatistics, batch: Int) {
        let m = Double(statistics.count)
        let correction = m > 1 ? m / (m - 1) : 1
        let channels = featureCount
        func averageOverBatch(_ values: [Float], channel c: Int) -> Double {
            (0..<batch).reduce(0.0) { $0 + Double(values[$1 * channels + c]) } / Double(batch)
        }
        running!.fold(average: runningAverage, layer: description,
                      batchMean: { averageOverBatch(statistics.mean, channel: $0) },
                      batchVariance: { averageOverBatch(statistics.variance, channel: $0) * correction })
    }

    // MARK: Buffers

    /// PyTorch's buffer names, present only with `tracksRunningStatistics` (as in PyTorch).
    public override func ownBuffers() -> [(String, StateValue)] { running?.buffers ?? [] }

    public override func setOwnBuffer(_ name: String, to value: StateValue) {
        running!.setBuffer(name, to: value, layer: description)
    }

    public override var description: String {
        var options = ["epsilon: \(epsilon)"]
        if isAffine { options.append("affine: true") }
        if tracksRunningStatistics { options.append("tracksRunningStatistics: true, \(runningAverage)") }
        return "InstanceNorm\(spatialRank)d(\(featureCount), \(options.joined(separator: ", ")))"
    }
}

/// Instance norm over (N, C, L) or (C, L), PyTorch's `nn.InstanceNorm1d`
/// (ε 1e-5, no affine, no running statistics by default).
public final class InstanceNorm1d: InstanceNorm {
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = false, tracksRunningStatistics: Bool = false) {
        super.init(featureCount: featureCount, spatialRank: 1, epsilon: epsilon, runningAverage: runningAverage,
                   affine: affine, tracksRunningStatistics: tracksRunningStatistics)
    }
}

/// Instance norm over (N, C, H, W) or (C, H, W), PyTorch's `nn.InstanceNorm2d`
/// (ε 1e-5, no affine, no running statistics by default).
public final class InstanceNorm2d: InstanceNorm {
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = false, tracksRunningStatistics: Bool = false) {
        super.init(featureCount: featureCount, spatialRank: 2, epsilon: epsilon, runningAverage: runningAverage,
                   affine: affine, tracksRunningStatistics: tracksRunningStatistics)
    }
}

/// Instance norm over (N, C, D, H, W) or (C, D, H, W), PyTorch's `nn.InstanceNorm3d`
/// (ε 1e-5, no affine, no running statistics by default).
public final class InstanceNorm3d: InstanceNorm {
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = false, tracksRunningStatistics: Bool = false) {
        super.init(featureCount: featureCount, spatialRank: 3, epsilon: epsilon, runningAverage: runningAverage,
                   affine: affine, tracksRunningStatistics: tracksRunningStatistics)
    }
}
