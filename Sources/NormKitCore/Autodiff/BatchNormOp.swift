/// How a tensor's axes map onto the kernels' (outer, channels, inner) view.
public struct FeatureLayout: Sendable, Equatable {
    public var outer: Int, channels: Int, inner: Int

    /// The view of `shape` with the features on `featureAxis` (negative counts from the end).
    public init(shape: [Int], featureAxis: Int) {
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        precondition(axis >= 0 && axis < shape.count, "feature axis \(featureAxis) is out of range for shape \(shape)")
        outer = shape[..<axis].reduce(1, *)
        channels = shape[axis]
        inner = shape[(axis + 1)...].reduce(1, *)
    }
}

/// Batch normalization as one autodiff node.
///
/// Normalizes `input` per feature on `featureAxis`, then applies γ (`gamma`)
/// and β (`beta`) when given: y = γ·(x − μ)·invstd + β, invstd = 1/√(σ² + ε).
/// With `statistics == nil` it uses the batch's own mean and biased variance
/// (training) and returns them; otherwise it uses the given mean and variance
/// (running estimates: inference) and the pullback treats them as constants.
/// Only μ and invstd are kept for the pullback, besides the input.
/// (Ghost batches and Batch Renormalization: the overload with
/// `ghostBatchSize:renormalizingToward:`; both share one implementation.)
///
/// Shapes: `input` any rank ≥ 2; `gamma`, `beta`, and given statistics hold one
/// value per feature.
public func batchNorm(
    _ input: Tensor, featureAxis: Int = 1, gamma: Tensor?, beta: Tensor?, epsilon: Float,
    using given: (mean: [Float], variance: [Float])? = nil
) -> (output: Tensor, statistics: BatchNormStatistics) {
    let source: _BatchNormSource = given.map { .given(mean: $0.mean, variance: $0.variance) }
        ?? .batch(ghostBatchSize: nil, renormalization: nil)
    let result = _batchNorm(input, featureAxis: featureAxis, gamma: gamma, beta: beta, epsilon: epsilon, source: source)
    return (result.output, result.statistics[0])
}
