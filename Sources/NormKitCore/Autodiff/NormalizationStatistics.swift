/// What a normalization forward normalized with, per normalized group: per
/// channel for batch norm, per row for group norm (one (batch, group) pair of the
/// `GroupNormLayout`; for InstanceNorm one (n, c), for LayerNorm one sample).
///
/// Batch norm and its siblings share one kernel pair and report the same four
/// numbers, so they share one type; `BatchNormStatistics` and
/// `GroupNormStatistics` name it by the op that produced it.
public struct NormalizationStatistics: Sendable {
    /// μ per group.
    public var mean: [Float]
    /// The biased variance σ² per group (what normalized the values).
    public var variance: [Float]
    /// 1/√(σ² + ε) per group.
    public var inverseStandardDeviation: [Float]
    /// Values per group that produced the statistics.
    public var count: Int
    /// Whether every statistic is finite (a NaN or ∞ among the values makes it false).
    public var isFinite: Bool { mean.allSatisfy(\.isFinite) && variance.allSatisfy(\.isFinite) }

    public init(mean: [Float], variance: [Float], inverseStandardDeviation: [Float], count: Int) {
        self.mean = mean
        self.variance = variance
        self.inverseStandardDeviation = inverseStandardDeviation
        self.count = count
    }
}

/// The statistics of a batch-norm forward, per channel.
public typealias BatchNormStatistics = NormalizationStatistics
/// The statistics of a group-norm forward (GroupNorm, LayerNorm, InstanceNorm), per row.
public typealias GroupNormStatistics = NormalizationStatistics
