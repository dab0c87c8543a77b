/// The `q`-th percentile (0…100) of `values` by linear interpolation between
/// the two nearest ranks — NumPy's default (`method="linear"`), so a report's
/// numbers can be checked with `numpy.percentile`.
///
/// With n sorted values x₀ ≤ … ≤ xₙ₋₁ the percentile sits at rank
/// h = (n − 1)·q/100 and is x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋). Non-finite
/// values are not allowed (a diverged network's activations are reported as
/// divergence, not as percentiles).
public func percentile(_ values: [Float], _ q: Double) -> Double {
    percentiles(values, [q])[0]
}

/// Several percentiles of `values` from one sort; see `percentile(_:_:)`.
/// The results are ordered as `qs` is (monotone in q).
public func percentiles(_ values: [Float], _ qs: [Double]) -> [Double] {
    precondition(!values.isEmpty, "percentiles: no values")
    precondition(qs.allSatisfy { (0...100).contains($0) }, "percentiles: q must be in 0…100, got \(qs)")
    let sorted = values.map(Double.init).sorted()
    return qs.map { q in
        let rank = Double(sorted.count - 1) * q / 100
        let lower = Int(rank.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        return sorted[lower] + (rank - Double(lower)) * (sorted[upper] - sorted[lower])
    }
}
