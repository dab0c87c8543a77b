import NormKitCore
import Testing

@Suite("dropout op")
struct DropoutOpTests {
    @Test("dropout with a fixed mask scales kept values by 1/(1 − p), zeroes the rest, and its gradient matches")
    func fixedMask() {
        let keep: [UInt8] = [1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0]
        let p = 0.25
        expectGradientsMatchFiniteDifferences(at: [randomValues([3, 4], seed: 10)]) { t in
            dropout(t[0], keep: keep, probability: Float(p))
        } reference: { d in
            DoubleTensor(zip(d[0].values, keep).map { $1 == 1 ? $0 / (1 - p) : 0 }, shape: d[0].shape)
        }
    }

    @Test("a seeded generator draws the same mask, and about p of the values are dropped")
    func seededMask() {
        let x = Tensor.ones([100, 100])
        var first = SeededGenerator(seed: 11), second = SeededGenerator(seed: 11)
        let a = dropout(x, probability: 0.3, generator: &first)
        let b = dropout(x, probability: 0.3, generator: &second)
        #expect(a.scalars == b.scalars)
        let dropped = Double(a.scalars.filter { $0 == 0 }.count) / 10_000
        #expect(abs(dropped - 0.3) < 0.02)   // 4.4 standard deviations of a binomial(10⁴, 0.3) fraction
        #expect(a.scalars.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
    }

    @Test("dropout with p = 1 drops everything and p = 0 keeps everything unscaled")
    func extremes() {
        let x = randomValues([4, 5], seed: 12).tensor
        var generator = SeededGenerator(seed: 13)
        #expect(dropout(x, probability: 1, generator: &generator).scalars.allSatisfy { $0 == 0 })
        #expect(dropout(x, probability: 0, generator: &generator).scalars == x.scalars)
    }
}
