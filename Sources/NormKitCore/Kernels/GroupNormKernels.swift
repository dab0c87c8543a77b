// Group-normalization kernels: one forward/backward pair over raw buffers that
// serves the batch-independent siblings of batch norm — LayerNorm, GroupNorm
// and InstanceNorm.
//
// Layout contract: x is viewed as (batch, groups, channelsPerGroup, inner),
// row-major. Statistics belong to a *row* = one (batch, group) pair and cover
// its channelsPerGroup·inner contiguous values; γ and β belong to a *channel*
// = one (group, channelInGroup) pair and are shared by every batch entry and
// every inner position:
//
// | op | input | view |
// |---|---|---|
// | LayerNorm over trailing dims D… | (outer…, D…) | (outer, 1, ∏D, 1): γ per normalized element |
// | GroupNorm, G groups | (N, C, S…) | (N, G, C/G, ∏S) |
// | InstanceNorm | (N, C, S…) | (N, C, 1, ∏S) |
//
// Unlike batch norm, no statistic crosses the batch axis: every row is
// normalized on its own, so these ops behave the same in training and in
// inference (InstanceNorm's optional running estimates aside).

/// How a tensor maps onto the group-norm kernels' (batch, groups, channelsPerGroup, inner) view.
public struct GroupNormLayout: Sendable, Equatable, CustomStringConvertible {
    public var batch: Int, groups: Int, channelsPerGroup: Int, inner: Int

    public init(batch: Int, groups: Int, channelsPerGroup: Int, inner: Int) {
        precondition(batch >= 0 && groups > 0 && channelsPerGroup > 0 && inner >= 0,
                     "GroupNormLayout: invalid view (\(batch), \(groups), \(channelsPerGroup), \(inner))")
        self.batch = batch
        self.groups = groups
        self.channelsPerGroup = channelsPerGroup
        self.inner = inner
    }

    /// Rows = (batch, group) pairs: one mean and one variance each.
    public var rows: Int { batch * groups }
    /// Values that share one row's statistics (PyTorch's "values per group").
    public var rowLength: Int { channelsPerGroup * inner }
    /// Entries of γ and β.
    public var channels: Int { groups * channelsPerGroup }
    /// Values in the whole tensor.
    public var count: Int { rows * rowLength }

    public var description: String { "(\(batch), \(groups), \(channelsPerGroup), \(inner))" }

    /// LayerNorm over the trailing `normalizedShape` of `shape`: each leading
    /// index is a row, γ and β are elementwise over `normalizedShape`.
    public static func layerNorm(shape: [Int], normalizedShape: [Int]) -> GroupNormLayout {
        precondition(!normalizedShape.isEmpty && shape.count >= normalizedShape.count
                     && Array(shape.suffix(normalizedShape.count)) == normalizedShape,
                     "LayerNorm: normalizedShape \(normalizedShape) expects input of shape [*, "
                     + "\(normalizedShape.map(String.init).joined(separator: ", "))], got shape \(shape)")
        let span = normalizedShape.reduce(1, *)
        return GroupNormLayout(batch: shape.dropLast(normalizedShape.count).reduce(1, *), groups: 1,
                               channelsPerGroup: span, inner: 1)
    }

    /// GroupNorm of (N, C, S…) with `groupCount` groups of C/groupCount consecutive channels.
    public static func groupNorm(shape: [Int], groupCount: Int) -> GroupNormLayout {
        precondition(shape.count >= 2, "GroupNorm: expects input (batch, channels, …), got shape \(shape)")
        precondition(groupCount > 0 && shape[1] % groupCount == 0,
                     "GroupNorm: \(groupCount) groups do not divide the \(shape[1]) channels of shape \(shape)")
        return GroupNormLayout(batch: shape[0], groups: groupCount, channelsPerGroup: shape[1] / groupCount,
                               inner: shape.dropFirst(2).reduce(1, *))
    }

    /// InstanceNorm of (N, C, S…): every (n, c) is its own row.
    public static func instanceNorm(shape: [Int]) -> GroupNormLayout {
        precondition(shape.count >= 2, "InstanceNorm: expects input (batch, channels, …), got shape \(shape)")
        return GroupNormLayout(batch: shape[0], groups: shape[1], channelsPerGroup: 1,
                               inner: shape.dropFirst(2).reduce(1, *))
    }
}

/// Mean and biased variance of every row of x (see the layout contract above).
///
/// Rows are contiguous, so they are the channels of batch norm's
/// (outer 1, channels `rows`, inner `rowLength`) view, and `batchNormStatistics`
/// computes them: Double accumulators, shifted sums repeated around the mean
/// when the first value was far from it, so |mean| ≫ std loses nothing (the
/// one-pass E[x²] − E[x]² formula would lose every digit at mean 1e4, std
/// 1e-3) and a constant row gets a variance of exactly 0. The variance is
/// clamped at 0 (NaN propagates, so a non-finite input shows in the statistics).
/// Empty rows get mean and variance 0.
///
/// - Parameters:
///   - x: `layout.count` values.
///   - mean, variance: `layout.rows` values each, written.
public func groupNormStatistics(
    _ x: UnsafeBufferPointer<Float>, layout: GroupNormLayout,
    mean: UnsafeMutableBufferPointer<Double>, variance: UnsafeMutableBufferPointer<Double>
) {
    precondition(x.count == layout.count && mean.count == layout.rows && variance.count == layout.rows,
                 "groupNormStatistics: buffers (\(x.count), \(mean.count), \(variance.count)) do not fit \(layout)")
    guard layout.rowLength > 0 else {   // empty rows: nothing to normalize
        mean.update(repeating: 0)
        variance.update(repeating: 0)
        return
    }
    batchNormStatistics(x, outer: 1, channels: layout.rows, inner: layout.rowLength, mean: mean, variance: variance)
}

/// y = γ[c]·(x − μ[row])·invstd[row] + β[c] over (batch, groups, channelsPerGroup, inner).
///
/// Per (row, channel) the constants fold to a = γ·invstd and b = β − γ·r·invstd,
/// so the inner loop is one subtraction and one FMA: y = (x − mean)·a + b,
/// where `mean` is μ rounded to Float and r = μ − mean the part rounding lost.
/// Subtracting the Float mean first (exact for x near it, by Sterbenz) keeps
/// the deviation when |μ| ≫ σ; x·a + (β − μ·a) would cancel two terms of size
/// |μ|·invstd in Float and be off by O(1) at μ = 1e4, σ = 1e-3.
///
/// - Parameters:
///   - mean, inverseStandardDeviation: `layout.rows` values.
///   - meanResidual: μ − mean per row, or nil for 0.
///   - gamma, beta: `layout.channels` values, or nil for 1 and 0.
///   - y: `layout.count` values, written.
@inlinable
public func groupNormApply(
    _ x: UnsafeBufferPointer<Float>, layout: GroupNormLayout,
    mean: UnsafeBufferPointer<Float>, inverseStandardDeviation invstd: UnsafeBufferPointer<Float>,
    meanResidual: UnsafeBufferPointer<Float>? = nil,
    gamma: UnsafeBufferPointer<Float>?, beta: UnsafeBufferPointer<Float>?,
    output y: UnsafeMutableBufferPointer<Float>
) {
    precondition(x.count == layout.count && y.count == x.count && mean.count == layout.rows
                 && invstd.count == layout.rows && (meanResidual?.count ?? layout.rows) == layout.rows
                 && (gamma?.count ?? layout.channels) == layout.channels
                 && (beta?.count ?? layout.channels) == layout.channels,
                 "groupNormApply: buffers do not fit \(layout)")
    guard layout.count > 0 else { return }
    let px = x.baseAddress!, py = y.baseAddress!
    let (groups, perGroup, inner) = (layout.groups, layout.channelsPerGroup, layout.inner)
    for row in 0..<layout.rows {
        let mu = mean[row], s = invstd[row]
        let residualTimesScale = (meanResidual?[row] ?? 0) * s
        let firstChannel = (row % groups) * perGroup
        for j in 0..<perGroup {
            let c = firstChannel + j
            let g = gamma?[c] ?? 1
            let a = g * s, b = (beta?[c] ?? 0) - g * residualTimesScale
            let base = (row * perGroup + j) * inner
            for i in 0..<inner { py[base + i] = (px[base + i] - mu) * a + b }
        }
    }
}

/// The fused group-norm pullback.
///
/// With x̂ = (x − μ)·invstd, y = γ·x̂ + β and g = dy·γ, sums Σ over a row's
/// M = rowLength values and Σ' over every value of a channel (all rows):
/// dβ = Σ'dy, dγ = Σ'(dy·x̂), and
/// - when μ, invstd are the row's own statistics: dx = invstd·(g − Σg/M − x̂·Σ(g·x̂)/M);
/// - when they are constants (InstanceNorm's running estimates): dx = dy·γ·invstd.
/// Each row is read twice while it is in cache: one pass accumulates the sums
/// in Double, the second writes dx = dy·(γ·invstd) + (x − mean)·B + C with
/// per-row B and C. Centring x on the Float mean before scaling matters when
/// |μ| ≫ σ: x·B and μ·B would be huge and cancel in Float.
///
/// - Parameters:
///   - mean, inverseStandardDeviation: the statistics the forward used (`layout.rows`).
///   - meanResidual: μ − mean per row when `mean` is the row mean rounded to
///     Float (the part rounding lost, which matters when |μ| ≫ σ); nil for 0.
///   - gamma: the scale (`layout.channels`), or nil for 1 (affine off).
///   - inputGradient: `layout.count` values, written when non-nil; gammaGradient,
///     betaGradient (`layout.channels`) likewise.
@inlinable
public func groupNormBackward(
    input x: UnsafeBufferPointer<Float>, outputGradient dy: UnsafeBufferPointer<Float>, layout: GroupNormLayout,
    mean: UnsafeBufferPointer<Float>, inverseStandardDeviation invstd: UnsafeBufferPointer<Float>,
    meanResidual: UnsafeBufferPointer<Float>? = nil,
    gamma: UnsafeBufferPointer<Float>?, statisticsFromInput: Bool,
    inputGradient dx: UnsafeMutableBufferPointer<Float>?,
    gammaGradient: UnsafeMutableBufferPointer<Float>?, betaGradient: UnsafeMutableBufferPointer<Float>?
) {
    precondition(x.count == layout.count && dy.count == x.count && mean.count == layout.rows
                 && invstd.count == layout.rows && (meanResidual?.count ?? layout.rows) == layout.rows
                 && (gamma?.count ?? layout.channels) == layout.channels
                 && (dx?.count ?? x.count) == x.count
                 && (gammaGradient?.count ?? layout.channels) == layout.channels
                 && (betaGradient?.count ?? layout.channels) == layout.channels,
                 "groupNormBackward: buffers do not fit \(layout)")
    let (groups, perGroup, inner) = (layout.groups, layout.channelsPerGroup, layout.inner)
    let m = Double(layout.rowLength)
    var sumDyPerChannel = [Double](repeating: 0, count: layout.channels)          // Σ' dy
    var sumDyNormalizedPerChannel = [Double](repeating: 0, count: layout.channels) // Σ' dy·x̂
    if layout.count > 0 {
        let px = x.baseAddress!, pdy = dy.baseAddress!
        for row in 0..<layout.rows {
            let mu = mean[row], muDouble = Double(mu)
            let s = Double(invstd[row]), residual = Double(meanResidual?[row] ?? 0)
            let firstChannel = (row % groups) * perGroup
            // Pass 1: Σg and Σg·(x − mean) over the row, per channel Σdy and Σdy·(x − mean).
            var sumG = 0.0, sumGCentered = 0.0
            for j in 0..<perGroup {
                let c = firstChannel + j
                let base = (row * perGroup + j) * inner
                var sumDy = 0.0, sumDyCentered = 0.0
                for i in 0..<inner {
                    let g = Double(pdy[base + i])
                    sumDy += g
                    sumDyCentered += g * (Double(px[base + i]) - muDouble)
                }
                // x − μ = (x − mean) − residual.
                sumDyPerChannel[c] += sumDy
                sumDyNormalizedPerChannel[c] += (sumDyCentered - residual * sumDy) * s
                let gammaC = Double(gamma?[c] ?? 1)
                sumG += gammaC * sumDy
                sumGCentered += gammaC * sumDyCentered
            }
            guard let dx else { continue }
            // Pass 2: dx = dy·(γ·invstd) + (x − mean)·B + C.
            var b: Float = 0, k: Float = 0
            if statisticsFromInput {
                let sumGDeviation = sumGCentered - residual * sumG   // Σ g·(x − μ)
                let bRow = -s * s * s * sumGDeviation / m
                b = Float(bRow)
                k = Float(-s * sumG / m - bRow * residual)
            }
            let pdx = dx.baseAddress!
            for j in 0..<perGroup {
                let c = firstChannel + j
                let a = Float(Double(gamma?[c] ?? 1) * s)
                let base = (row * perGroup + j) * inner
                for i in 0..<inner { pdx[base + i] = pdy[base + i] * a + (px[base + i] - mu) * b + k }
            }
        }
    }
    for c in 0..<layout.channels {
        betaGradient?[c] = Float(sumDyPerChannel[c])
        gammaGradient?[c] = Float(sumDyNormalizedPerChannel[c])
    }
}
