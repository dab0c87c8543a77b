import NormKitCore
import Testing

/// Mean and (population) standard deviation, in Double.
private func moments(_ values: [Float]) -> (mean: Double, standardDeviation: Double) {
    let n = Double(values.count)
    let mean = values.reduce(0.0) { $0 + Double($1) } / n
    let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n
    return (mean, variance.squareRoot())
}

@Suite("SeededGenerator and random tensors")
struct RandomTests {
    @Test func seedingFollowsSplitMix64() {
        // The first four SplitMix64 outputs for seed 0 (published test values).
        let generator = SeededGenerator(seed: 0)
        #expect(generator.state.0 == 0xE220_A839_7B1D_CDAF)
        #expect(generator.state.1 == 0x6E78_9E6A_A1B9_65F4)
        #expect(generator.state.2 == 0x06C4_5D18_8009_454F)
        #expect(generator.state.3 == 0xF88B_B8A8_724C_81EC)
    }

    @Test func drawsFollowXoshiro256StarStar() {
        // Computed with an independent implementation of xoshiro256** from the state above.
        // Eight draws, so that every word of the state has fed an output.
        var generator = SeededGenerator(seed: 0)
        let draws = (0..<8).map { _ in generator.next() }
        #expect(draws == [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0, 0x6AA5_94F1_262D_2D2C,
                          0xBBA5_AD4A_1F84_2E59, 0xFFEF_8375_D9EB_CACA, 0x6C16_0DEE_D2F5_4C98, 0x8920_AD64_8FC3_0A3F])
    }

    @Test func generatorsWithTheSameSeedAndDrawsHaveEqualState() {
        var a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42)
        #expect(a == b)
        _ = Tensor.randomNormal([10], using: &a)
        _ = Tensor.randomNormal([10], using: &b)
        #expect(a == b)
        _ = a.next()
        #expect(a != b, "one more draw changes the state")
        #expect(SeededGenerator(seed: 1) != SeededGenerator(seed: 2))
    }

    @Test func restoringTheStateReplaysTheStream() {
        var generator = SeededGenerator(seed: 7)
        _ = generator.next()
        var replay = SeededGenerator(seed: 0)
        replay.state = generator.state
        #expect((0..<5).map { _ in generator.next() } == (0..<5).map { _ in replay.next() })
    }

    @Test func randomTensorsAreReproducibleFromTheSeed() {
        var a = SeededGenerator(seed: 3), b = SeededGenerator(seed: 3), c = SeededGenerator(seed: 4)
        let first = Tensor.randomNormal([4, 5], using: &a)
        #expect(first.shape == [4, 5])
        #expect(first.scalars == Tensor.randomNormal([4, 5], using: &b).scalars)
        #expect(first.scalars != Tensor.randomNormal([4, 5], using: &c).scalars)
        #expect(Tensor.randomUniform([6], using: &a).scalars == Tensor.randomUniform([6], using: &b).scalars)
        #expect(first.scalars != Tensor.randomNormal([4, 5], using: &a).scalars, "the stream moves on")
    }

    @Test func randomNormalHasTheRequestedMeanAndStandardDeviation() {
        var generator = SeededGenerator(seed: 11)
        let samples = Tensor.randomNormal([100_000], mean: 3, standardDeviation: 2, using: &generator).scalars
        let (mean, standardDeviation) = moments(samples)
        // Standard errors are 2/√10⁵ ≈ 0.0063 for the mean and ≈ 0.0045 for the std: these bounds are > 6σ.
        #expect(abs(mean - 3) < 0.04, "mean \(mean)")
        #expect(abs(standardDeviation - 2) < 0.03, "std \(standardDeviation)")
        #expect(samples.allSatisfy { $0.isFinite })
        // Box–Muller in Double reaches the tails: about 46 of 10⁵ samples have |z| > 3.5.
        #expect(samples.contains { abs($0 - 3) > 3.5 * 2 })
        #expect(samples.filter { abs($0 - 3) > 2 * 2 }.count > 3_500, "≈ 4.6 % beyond 2σ")
    }

    @Test func randomUniformStaysInItsRangeWithUniformMoments() {
        var generator = SeededGenerator(seed: 12)
        let samples = Tensor.randomUniform([100_000], lower: -2, upper: 5, using: &generator).scalars
        #expect(samples.allSatisfy { $0 >= -2 && $0 < 5 })
        let (mean, standardDeviation) = moments(samples)
        // U[-2, 5): mean 1.5, std 7/√12 ≈ 2.0207; standard error of the mean ≈ 0.0064.
        #expect(abs(mean - 1.5) < 0.04, "mean \(mean)")
        #expect(abs(standardDeviation - 7 / 12.0.squareRoot()) < 0.03, "std \(standardDeviation)")
        let lowerHalf = samples.filter { $0 < 1.5 }.count
        #expect(abs(lowerHalf - 50_000) < 1_000, "\(lowerHalf) samples below the midpoint")
    }

    @Test(arguments: [(Float(1), Float(2)), (0.5, 1.5), (3, 4), (-1, 1), (0, 1), (-0.1, 0.1)])
    func randomUniformNeverReturnsTheUpperBound(lower: Float, upper: Float) {
        // A state whose next draw has all 24 top bits set, so u = 1 − 2⁻²⁴, the largest unit float.
        // lower + (upper − lower)·u is then within half an ulp of `upper` and may round to it
        // (for [1, 2) it ties and rounds to even, 2).
        var generator = SeededGenerator(seed: 0)
        generator.state = (1, 0x000B_60B6_0000_0000, 2, 3)
        var probe = generator
        #expect(probe.next() >> 40 == 0xFF_FFFF, "the crafted state yields the largest unit float")
        let value = Tensor.randomUniform([1], lower: lower, upper: upper, using: &generator).scalar
        #expect(value >= lower && value < upper, "U[\(lower), \(upper)) gave \(value)")
    }

    @Test func unitFloatsLieInTheHalfOpenUnitInterval() {
        var generator = SeededGenerator(seed: 13)
        let values = (0..<10_000).map { _ in generator.nextUnitFloat() }
        #expect(values.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(values.min()! < 0.001 && values.max()! > 0.999)
    }
}
