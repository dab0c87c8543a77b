import NormKitCore
import NormKitStudy
import Testing

/// The percentile the slow, obvious way: walk the empirical quantile function —
/// the piecewise-linear curve through (i / (n − 1), xᵢ) — until q/100 falls in a segment.
private func referencePercentile(_ values: [Double], _ q: Double) -> Double {
    let sorted = values.sorted()
    guard sorted.count > 1 else { return sorted[0] }
    let position = q / 100
    for i in 0..<(sorted.count - 1) {
        let start = Double(i) / Double(sorted.count - 1), end = Double(i + 1) / Double(sorted.count - 1)
        if position <= end || i == sorted.count - 2 {
            return sorted[i] + (position - start) / (end - start) * (sorted[i + 1] - sorted[i])
        }
    }
    return sorted.last!
}

@Suite("Percentiles")
struct PercentileTests {
    @Test("match numpy.percentile on a small example: [1, 2, 3, 4] → 1.45, 2.5, 3.55")
    func numpyExample() {
        let result = percentiles([4, 1, 3, 2], [15, 50, 85])
        for (value, expected) in zip(result, [1.45, 2.5, 3.55]) { #expect(abs(value - expected) < 1e-12) }
        #expect(percentile([4, 1, 3, 2], 0) == 1)
        #expect(percentile([4, 1, 3, 2], 100) == 4)
        #expect(percentile([7], 15) == 7)
    }

    @Test("agree with the quantile-function reference on random data of many sizes", arguments: [2, 3, 10, 60, 1001])
    func matchReference(count: Int) {
        var generator = SeededGenerator(seed: UInt64(count))
        let values = (0..<count).map { _ in generator.nextStandardNormal() * 3 + 1 }
        for q in [0.0, 1, 15, 33.3, 50, 85, 99, 100] {
            let expected = referencePercentile(values.map(Double.init), q)
            #expect(abs(percentile(values, q) - expected) <= 1e-9 * max(1, abs(expected)), "q = \(q)")
        }
    }

    @Test("15th ≤ 50th ≤ 85th, and the triple ignores the order of the values")
    func orderedAndPermutationInvariant() {
        var generator = SeededGenerator(seed: 7)
        for trial in 0..<20 {
            let values = (0..<(5 + trial * 7)).map { _ in generator.nextStandardNormal() * Float(trial + 1) }
            let triple = PercentileTriple(of: values)
            #expect(triple.p15 <= triple.p50 && triple.p50 <= triple.p85)
            #expect(PercentileTriple(of: values.reversed()) == triple)
            #expect(triple.p15 >= Double(values.min()!) && triple.p85 <= Double(values.max()!))
        }
    }
}
