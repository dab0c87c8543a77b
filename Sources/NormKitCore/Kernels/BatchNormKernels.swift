// Batch-normalization kernels: a forward/backward pair over raw buffers.
//
// Layout contract: x is viewed as (outer, channels, inner), row-major. A
// channels-first tensor (N, C, L…) has outer = N, inner = L…; a channels-last
// one (N, …, C) has outer = N·…, inner = 1. Every channel owns
// m = outer · inner values.

/// Per-channel batch mean and biased variance of x (outer, channels, inner).
///
/// Two passes with Double accumulators: first the mean, then the mean of the
/// squared deviations from it, each deviation formed in Double. The one-pass
/// E[x²] − E[x]² formula cancels catastrophically when |mean| ≫ std (at mean
/// 1e4 and std 1e-3 it loses every significant digit); two passes do not.
/// The variance is clamped at 0.
///
/// - Parameters:
///   - mean, variance: `channels` values each, written.
@inlinable
public func batchNormStatistics(
    _ x: UnsafeBufferPointer<Float>, outer: Int, channels: Int, inner: Int,
    mean: UnsafeMutableBufferPointer<Double>, variance: UnsafeMutableBufferPointer<Double>
) {
    precondition(x.count == outer * channels * inner && mean.count == channels && variance.count == channels,
                 "batchNormStatistics: buffers (\(x.count), \(mean.count), \(variance.count)) do not fit (\(outer), \(channels), \(inner))")
    let m = Double(outer * inner)
    let p = x.baseAddress!
    mean.update(repeating: 0)
    variance.update(repeating: 0)
    if inner == 1 {
        // Rows of `channels` values: accumulate across rows, vectorized over channels.
        for row in 0..<outer {
            let line = p + row * channels
            for c in 0..<channels { mean[c] += Double(line[c]) }
        }
        for c in 0..<channels { mean[c] /= m }
        for row in 0..<outer {
            let line = p + row * channels
            for c in 0..<channels {
                let deviation = Double(line[c]) - mean[c]
                variance[c] += deviation * deviation
            }
        }
    } else {
        for c in 0..<channels {
            var total = 0.0
            for o in 0..<outer {
                let line = p + (o * channels + c) * inner
                for i in 0..<inner { total += Double(line[i]) }
            }
            let mu = total / m
            mean[c] = mu
            var squares = 0.0
            for o in 0..<outer {
                let line = p + (o * channels + c) * inner
                for i in 0..<inner {
                    let deviation = Double(line[i]) - mu
                    squares += deviation * deviation
                }
            }
            variance[c] = squares
        }
    }
    for c in 0..<channels { variance[c] = max(variance[c] / m, 0) }
}

/// y = (x − center[c]) · scale[c] + shift[c] over (outer, channels, inner):
/// every batch-norm forward, once the per-channel constants are folded
/// (center = μ rounded to Float, scale = γ·invstd, shift = β − (μ − center)·scale),
/// is one subtraction and one FMA per element.
///
/// Why not y = x·scale + (β − μ·scale), one FMA: when |μ| ≫ σ both terms are
/// huge (|μ|·invstd) and their Float sum cancels the deviation; at μ = 1e4,
/// σ = 1e-3 the output is off by O(1). x − center is exact for x near the
/// mean (Sterbenz), so the deviation survives.
///
/// - Parameters:
///   - center: `channels` values subtracted first; nil for 0 (plain x·scale + shift).
@inlinable
public func batchNormApply(
    _ x: UnsafeBufferPointer<Float>, outer: Int, channels: Int, inner: Int,
    scale: UnsafeBufferPointer<Float>, shift: UnsafeBufferPointer<Float>,
    center: UnsafeBufferPointer<Float>? = nil,
    output y: UnsafeMutableBufferPointer<Float>
) {
    precondition(x.count == outer * channels * inner && y.count == x.count && scale.count == channels && shift.count == channels
                 && (center?.count ?? channels) == channels,
                 "batchNormApply: buffers do not fit (\(outer), \(channels), \(inner))")
    let zeros = center == nil ? [Float](repeating: 0, count: channels) : []
    zeros.withUnsafeBufferPointer { zeroBuffer in
        let mu = center ?? zeroBuffer
        let px = x.baseAddress!, py = y.baseAddress!
        if inner == 1 {
            for row in 0..<outer {
                let base = row * channels
                for c in 0..<channels { py[base + c] = (px[base + c] - mu[c]) * scale[c] + shift[c] }
            }
        } else {
            for o in 0..<outer {
                for c in 0..<channels {
                    let base = (o * channels + c) * inner
                    let m = mu[c], a = scale[c], b = shift[c]
                    for i in 0..<inner { py[base + i] = (px[base + i] - m) * a + b }
                }
            }
        }
    }
}

/// The fused batch-norm pullback.
///
/// With x̂ = (x − μ)·invstd and Σ over a channel's m values:
/// dβ = Σdy, dγ = Σ(dy·x̂), and
/// - when μ, invstd are the batch's statistics (training):
///   dx = γ·invstd/m · (m·dy − Σdy − x̂·Σ(dy·x̂));
/// - when they are constants (running statistics, inference): dx = dy·γ·invstd.
/// One reduction pass computes both sums; the second pass writes
/// dx = dy·A + (x − mean)·B + C with per-channel A, B, C. Centring x before
/// scaling matters when |μ| ≫ σ: x·B and μ·B would be huge and cancel in Float.
///
/// - Parameters:
///   - mean, inverseStandardDeviation: the statistics the forward used (`channels`).
///   - meanResidual: μ − mean per channel when `mean` is the batch mean rounded
///     to Float (the part rounding lost, which matters when |μ| ≫ σ); nil for 0.
///   - gamma: the scale, or nil for 1 (affine off).
///   - inputGradient: written when non-nil; gammaGradient, betaGradient likewise.
@inlinable
public func batchNormBackward(
    input x: UnsafeBufferPointer<Float>, outputGradient dy: UnsafeBufferPointer<Float>,
    outer: Int, channels: Int, inner: Int,
    mean: UnsafeBufferPointer<Float>, inverseStandardDeviation invstd: UnsafeBufferPointer<Float>,
    gamma: UnsafeBufferPointer<Float>?, statisticsFromBatch: Bool,
    meanResidual: UnsafeBufferPointer<Float>? = nil,
    inputGradient dx: UnsafeMutableBufferPointer<Float>?,
    gammaGradient: UnsafeMutableBufferPointer<Float>?, betaGradient: UnsafeMutableBufferPointer<Float>?
) {
    precondition(x.count == outer * channels * inner && dy.count == x.count,
                 "batchNormBackward: buffers do not fit (\(outer), \(channels), \(inner))")
    let m = Double(outer * inner)
    let px = x.baseAddress!, pdy = dy.baseAddress!
    var sumDy = [Double](repeating: 0, count: channels)
    var sumDyCentered = [Double](repeating: 0, count: channels)   // Σ dy·(x − μ)
    if inner == 1 {
        for row in 0..<outer {
            let base = row * channels
            for c in 0..<channels {
                let g = Double(pdy[base + c])
                sumDy[c] += g
                sumDyCentered[c] += g * (Double(px[base + c]) - Double(mean[c]))
            }
        }
    } else {
        for o in 0..<outer {
            for c in 0..<channels {
                let base = (o * channels + c) * inner
                let mu = mean[c]
                var s: Float = 0, sc: Float = 0
                for i in 0..<inner {
                    let g = pdy[base + i]
                    s += g
                    sc += g * (px[base + i] - mu)
                }
                sumDy[c] += Double(s)
                sumDyCentered[c] += Double(sc)
            }
        }
    }
    if let meanResidual {
        // Σdy·(x − μ) = Σdy·(x − mean) − (μ − mean)·Σdy.
        for c in 0..<channels { sumDyCentered[c] -= Double(meanResidual[c]) * sumDy[c] }
    }
    for c in 0..<channels {
        betaGradient?[c] = Float(sumDy[c])
        gammaGradient?[c] = Float(sumDyCentered[c] * Double(invstd[c]))
    }
    guard let dx else { return }
    // dx = dy·A + (x − mean)·B + C per channel, since x − μ = (x − mean) − residual.
    var a = [Float](repeating: 0, count: channels)
    var b = [Float](repeating: 0, count: channels)
    var k = [Float](repeating: 0, count: channels)
    for c in 0..<channels {
        let g = Double(gamma?[c] ?? 1), s = Double(invstd[c])
        a[c] = Float(g * s)
        if statisticsFromBatch {
            let bc = -g * s * s * s * sumDyCentered[c] / m
            b[c] = Float(bc)
            k[c] = Float(-g * s * sumDy[c] / m - bc * Double(meanResidual?[c] ?? 0))
        }
    }
    let pdx = dx.baseAddress!
    if inner == 1 {
        for row in 0..<outer {
            let base = row * channels
            for c in 0..<channels { pdx[base + c] = pdy[base + c] * a[c] + (px[base + c] - mean[c]) * b[c] + k[c] }
        }
    } else {
        for o in 0..<outer {
            for c in 0..<channels {
                let base = (o * channels + c) * inner
                let ac = a[c], bc = b[c], kc = k[c], mu = mean[c]
                for i in 0..<inner { pdx[base + i] = pdy[base + i] * ac + (px[base + i] - mu) * bc + kc }
            }
        }
    }
}
