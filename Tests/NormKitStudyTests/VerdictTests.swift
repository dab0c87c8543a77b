@testable import NormKitStudy
import Testing

/// A synthetic accuracy curve that rises linearly from 0.1 to `plateau` by `reachStep`, then stays.
private func curve(steps: [Int], plateau: Double, reachStep: Int) -> [Double] {
    steps.map { 0.1 + (plateau - 0.1) * min(1, Double($0) / Double(reachStep)) }
}

@Suite("Verdicts are computed from the numbers")
struct VerdictTests {
    let steps = Array(stride(from: 100, through: 3000, by: 100))

    @Test("speed-up: the ratio of the steps at which both curves reach the common level")
    func speedupRatio() {
        // Level: 95 % of 0.9 = 0.855, rounded down to 85 %. The fast curve passes 0.85 at step 469 (first
        // evaluation: 500), the slow one at step 1,407 (first evaluation: 1,500): 3.0× sooner.
        let fast = curve(steps: steps, plateau: 0.9, reachStep: 500), slow = curve(steps: steps, plateau: 0.9, reachStep: 1500)
        let verdict = Verdicts.speedup(steps: steps, withBN: fast, withoutBN: slow)
        #expect(verdict.supported)
        #expect(verdict.text == "with BN, 85 % test accuracy came 3.0× sooner (step 500 against 1,500).")

        let faster = Verdicts.speedup(steps: steps, withBN: fast, withoutBN: curve(steps: steps, plateau: 0.9, reachStep: 2500))
        #expect(faster.text != verdict.text)
    }

    @Test("speed-up: swapped curves, equal curves and a curve that never arrives give different verdicts")
    func speedupCases() {
        let fast = curve(steps: steps, plateau: 0.9, reachStep: 500), slow = curve(steps: steps, plateau: 0.9, reachStep: 1500)
        let swapped = Verdicts.speedup(steps: steps, withBN: slow, withoutBN: fast)
        #expect(!swapped.supported)
        #expect(swapped.text.hasPrefix("Not supported: without BN"))

        let same = Verdicts.speedup(steps: steps, withBN: fast, withoutBN: fast)
        #expect(!same.supported)
        #expect(same.text.contains("about the same step"))

        let never = Verdicts.speedup(steps: steps, withBN: fast, withoutBN: curve(steps: steps, plateau: 0.6, reachStep: 500))
        #expect(never.supported)
        #expect(never.text.contains("never came in 3,000 steps (best 60.0 %)"))
    }

    @Test("stability: a drifting distribution without BN against a steady one with BN, and the reverse")
    func stability() {
        let steady = (0..<10).map { PercentileTriple(p15: -1, p50: 0.01 * Double($0 % 2), p85: 1) }
        let drifting = (0..<10).map { PercentileTriple(p15: -1 + 0.5 * Double($0), p50: 0.5 * Double($0), p85: 1 + 0.6 * Double($0)) }
        #expect(Verdicts.drift(steady) < 0.01)
        // Median range 4.5, width 2 + 0.1·i ranges over 0.9 with mean 2.45.
        #expect(abs(Verdicts.drift(drifting) - (4.5 + 0.9) / 2.45) < 1e-12)
        let supported = Verdicts.stability(withBN: steady, withoutBN: drifting)
        #expect(supported.supported)
        let reverse = Verdicts.stability(withBN: drifting, withoutBN: steady)
        #expect(!reverse.supported)
        #expect(reverse.text.contains("steadier without BN"))
        #expect(!Verdicts.stability(withBN: drifting, withoutBN: drifting).supported)
        // Two perfectly steady distributions (drift 0 each) are equally steady, not a win for BN.
        let constant = (0..<4).map { _ in PercentileTriple(p15: -1, p50: 0, p85: 1) }
        let tie = Verdicts.stability(withBN: constant, withoutBN: constant)
        #expect(!tie.supported)
        #expect(tie.text.contains("about equally steady"))
    }

    @Test("learning rate: the largest grid point that trains, for each variant")
    func learningRate() {
        let grid = [0.01, 0.1, 1, 10, 100]
        let wider = Verdicts.learningRateTolerance(grid: grid, trainsWithBN: [true, true, true, true, false],
                                                   trainsWithoutBN: [true, true, false, false, false])
        #expect(wider.supported)
        #expect(wider.text.contains("100× larger"))
        #expect(wider.text.contains("with BN it trained up to 10, without BN up to 0.1"))

        let equal = Verdicts.learningRateTolerance(grid: grid, trainsWithBN: [true, true, false, false, false],
                                                   trainsWithoutBN: [true, true, false, false, false])
        #expect(!equal.supported)
        #expect(equal.text.contains("same largest learning rate"))

        let onlyBN = Verdicts.learningRateTolerance(grid: grid, trainsWithBN: [true, true, true, true, true],
                                                    trainsWithoutBN: [false, false, false, false, false])
        #expect(onlyBN.supported)
        #expect(onlyBN.text.contains("up to 100 (the largest tried), without BN at no learning rate"))

        // The grid is a public setting and need not ascend: the largest rate is compared, not the last.
        let descending = Verdicts.learningRateTolerance(grid: grid.reversed(), trainsWithBN: [false, true, true, true, true],
                                                        trainsWithoutBN: [false, false, false, true, true])
        #expect(descending.supported)
        #expect(descending.text.contains("with BN it trained up to 10, without BN up to 0.1"))
    }

    @Test("initialization: spreads of final accuracy across σ")
    func initialization() {
        let sigmas = [0.01, 0.1, 1, 10]
        let robust = Verdicts.initializationSensitivity(sigmas: sigmas, withBN: [0.84, 0.85, 0.86, 0.85],
                                                        withoutBN: [0.1, 0.8, 0.7, 0.1])
        #expect(robust.supported)
        #expect(robust.text.contains("84.0 %–86.0 % with BN, 10.0 %–80.0 % without"))
        let equal = Verdicts.initializationSensitivity(sigmas: sigmas, withBN: [0.84, 0.85, 0.86, 0.85],
                                                       withoutBN: [0.83, 0.85, 0.86, 0.84])
        #expect(!equal.supported)
        #expect(equal.text.contains("about equally sensitive"))
    }

    @Test("regularization: the train–test gap, including a larger gap with BN")
    func gap() {
        let smaller = Verdicts.generalizationGap(trainWithBN: 0.90, testWithBN: 0.88, trainWithoutBN: 0.95, testWithoutBN: 0.85)
        #expect(smaller.supported)
        #expect(smaller.text.contains("gap 2.0 points with BN"))
        #expect(smaller.text.contains("10.0 points without"))
        let larger = Verdicts.generalizationGap(trainWithBN: 0.97, testWithBN: 0.86, trainWithoutBN: 0.88, testWithoutBN: 0.85)
        #expect(!larger.supported)
        #expect(larger.text.hasPrefix("Not supported: with BN the train–test gap was larger"))
        let within = Verdicts.generalizationGap(trainWithBN: 0.90, testWithBN: 0.88, trainWithoutBN: 0.905, testWithoutBN: 0.88)
        #expect(!within.supported)
        #expect(within.text.contains("differ by less than 1.0 points"))
    }

    @Test("seed model: ahead in most epochs and at the end")
    func seedModel() {
        let ahead = Verdicts.seedModel(withBN: [0.80, 0.83, 0.85], withoutBN: [0.78, 0.82, 0.84])
        #expect(ahead.supported)
        #expect(ahead.text.contains("ahead in 3 of 3 epochs; final test accuracy 85.0 % with BN, 84.0 % without"))
        let behind = Verdicts.seedModel(withBN: [0.80, 0.81, 0.82], withoutBN: [0.81, 0.82, 0.83])
        #expect(!behind.supported)
        #expect(behind.text.contains("ahead in 0 of 3 epochs"))
    }

    @Test("a diverged sweep run counts as chance for the data's classes (5 % for 20), not a fixed 10 %")
    func divergedRunCountsAsChanceOfTheClassCount() {
        func run(batchNorm: Bool, divergedAt step: Int?) -> SigmoidRunResult {
            SigmoidRunResult(batchNorm: batchNorm, learningRate: 0.5, initialStandardDeviation: 1,
                             curve: [CurvePoint(step: 10, testAccuracy: 0.9, testLoss: 0.3, trainAccuracy: 0.9)],
                             divergedAtStep: step)
        }
        var configuration = StudyConfiguration.quick()
        configuration.sigmaGrid = [1]
        let section = Study.initializationSection(configuration, runs: [run(batchNorm: true, divergedAt: nil),
                                                                         run(batchNorm: false, divergedAt: 5)],
                                                  classCount: 20)
        #expect(section.verdicts[0].verdict.text.contains("90.0 %–90.0 % with BN, 5.0 %–5.0 % without"),
                "\(section.verdicts[0].verdict.text)")
    }
}
