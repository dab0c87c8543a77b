// BatchNorm against golden values from an independent NumPy float64
// implementation (Fixtures/make_batchnorm_golden.py, written from the paper and
// ../shared/BATCHNORM.md, not from NormKit's code).
//
// Each case runs three (one case six) training steps on different batches
// (outputs, batch statistics, running mean/variance and numBatchesTracked
// after each; Batch Renormalization's limits, r and d where it is on), the
// gradients of Σ dy·y at the last training step, then one inference-mode
// forward and backward on one more batch. Ghost-batch cases report the whole
// batch's mean and the pooled within-ghost-batch variance as the batch
// statistics (what the running estimates follow). The inputs in the fixture are
// float32 values, so NormKit sees exactly the numbers the reference used.
// Regenerate the fixture with `python3 make_batchnorm_golden.py` in Fixtures/.
//
// Tolerances
// ----------
// Float32 has a unit roundoff of 2⁻²⁴ ≈ 6e-8. NormKit accumulates statistics
// and gradient sums in Double and rounds each per-element result a handful of
// times in Float ((x − μ_f)·α + b forward; dy·A + (x − μ_f)·B + C backward),
// so it should agree with the float64 reference to ~1e-6 relative (measured:
// ≤ 7e-7 on every case). We allow
//     |actual − expected| ≤ 1e-5 · max(1, |expected|)
// for outputs and gradients: 10× margin over that, and the absolute floor of
// 1e-5 covers elements that are near 0 only by cancellation (their error is
// set by the O(1) scale of the quantity — the fixture's data keep γ, 1/σ and
// dy of order 1 — not by their own size). Every semantic slip is far larger:
// the wrong variance correction (m/(m − 1) with m ≤ 40) or momentum convention
// changes running estimates by > 1e-2, the wrong axis or count changes
// everything. The one slip that is numerically tiny at ε = 1e-5, ε outside
// the root, is pinned by the ε = 1e-3 Keras cases and by the constant channel
// (σ² = 0, where 1/√ε and 1/ε differ by 300×).
//
// Statistics (batch mean/variance, 1/σ, running mean/variance) are compared
// purely relatively, |Δ| ≤ 1e-5·|expected| with no floor: they are computed
// in Double and rounded once to Float, and the small ones — the 1e-6 batch
// variance of the mean-100 case, the exactly-0 variance of a constant channel —
// are precisely what a cancelling one-pass variance would get wrong.
//
// Large means (1e4 with σ = 1, 100 with σ = 1e-3). In training the inputs are
// exact float32 values and μ, σ² are Double, so nothing limits the result but
// the rounding of y itself: these cases get the same relative tolerance as the
// others (a forward folded as x·γs + (β − μγs) would be off by ~1e-3 here
// and fail, as would a backward with x·B and μ·B cancelling). In inference
// the running mean is *state stored as Float*: after t updates, each rounded
// to half an ulp and the earlier errors carried with weight ≤ 1, it is off by
// up to t/2 ulps of itself — 1.5 ulp after the three steps here, 1.5·9.8e-4 at
// 1e4, half a standard deviation at mean 100, σ 1e-3 — which no float32
// implementation can avoid. That float32 resolution, u = ulp(running mean),
// adds an absolute term with K = max(2, t/2) where the running mean enters:
//     inference y:  K·u·|γ|·s       (s = 1/√(running variance + ε))
//     inference dγ: K·u·s·Σ|dy|     (dγ = Σ dy·(x − μ)·s)
// per channel (dx = dy·γ·s and dβ = Σdy do not involve μ). On the ordinary
// cases the term is ~1e-7, far below the relative one.

import Foundation
import NormKitCore
import NormKitNN
import Testing

// MARK: - The fixture

struct GoldenFixture: Decodable, Sendable {
    let seed: Int
    let numpyVersion: String
    let cases: [GoldenCase]
}

struct GoldenCase: Decodable, Sendable {
    struct RunningAverageSpec: Decodable, Sendable {
        let kind: String
        let value: Double?
    }

    struct TrainingStep: Decodable, Sendable {
        let x: [Double]
        let y: [Double]
        let batchMean: [Double]
        let batchVariance: [Double]
        let inverseStd: [Double]
        let runningMean: [Double]?
        let runningVariance: [Double]?
        let numBatchesTracked: Int?
        /// Batch Renormalization's limits at this step and r, d per ghost batch and feature (flat).
        let rMax: Double?
        let dMax: Double?
        let r: [Double]?
        let d: [Double]?
    }

    /// Batch Renormalization's schedule: `constant` (rMax, dMax) or `linearWarmUp`.
    struct RenormalizationSpec: Decodable, Sendable {
        let kind: String
        let rMax: Double
        let dMax: Double
        let plainSteps: Int?
        let rMaxReachedAt: Int?
        let dMaxReachedAt: Int?
    }

    struct Gradients: Decodable, Sendable {
        let dy: [Double]
        let dx: [Double]
        let dgamma: [Double]?
        let dbeta: [Double]?
    }

    struct InferenceStep: Decodable, Sendable {
        let x: [Double]
        let dy: [Double]
        let y: [Double]
        /// The statistics that normalize: running estimates, or the batch's own without tracking.
        let mean: [Double]
        let variance: [Double]
        let inverseStd: [Double]
        let dx: [Double]
        let dgamma: [Double]?
        let dbeta: [Double]?
    }

    let name: String
    let description: String
    let shape: [Int]
    let featureAxis: Int
    let epsilon: Double
    let runningAverage: RunningAverageSpec
    let affine: Bool
    let tracksRunningStatistics: Bool
    let unbiasedRunningVariance: Bool
    let ghostBatchSize: Int?
    let renormalization: RenormalizationSpec?
    let gamma: [Double]?
    let beta: [Double]?
    let training: [TrainingStep]
    let lastStepGradients: Gradients
    let inference: InferenceStep
}

enum Golden {
    /// Every case the generator writes; a case that disappears from the fixture must be noticed.
    static let expectedCaseNames: Set<String> = [
        "nc_pytorch", "ncl_pytorch", "nchw_pytorch", "ncdhw_pytorch", "nhwc_pytorch",
        "nhwc_keras", "nc_axis_last_keras", "nchw_keras",
        "ncl_cumulative", "nc_cumulative",
        "ncl_no_affine", "nhwc_no_affine",
        "nchw_no_tracking", "nc_axis_last_no_tracking",
        "ncl_constant_channel",
        "large_mean_1e4_std_1", "large_mean_1e4_std_1_channels_last", "large_mean_100_std_1e-3",
        "nchw_biased_variance", "nc_cumulative_six_batches",
        "ncl_renorm_warm_up", "nc_renorm_unclipped", "nhwc_renorm_keras", "ncdhw_renorm_no_affine",
        "nc_ghost", "nchw_ghost", "nhwc_ghost_keras", "nc_ghost_no_tracking", "ncl_ghost_renorm_cumulative",
    ]

    static let loaded: Result<GoldenFixture, any Error> = Result { try decodeFixture(named: "batchnorm_golden") }

    static func fixture() throws -> GoldenFixture { try loaded.get() }

    static func caseNames() throws -> [String] { try fixture().cases.map(\.name) }

    static func goldenCase(named name: String) throws -> GoldenCase {
        try #require(try fixture().cases.first { $0.name == name }, "no case named \(name) in batchnorm_golden.json")
    }
}

extension GoldenCase.RenormalizationSpec {
    func renormalization() throws -> BatchRenormalization {
        switch kind {
        case "constant": return .constant(rMax: Float(rMax), dMax: Float(dMax))
        case "linearWarmUp":
            return .linearWarmUp(
                rMax: Float(rMax), dMax: Float(dMax), plainSteps: try #require(plainSteps, "linearWarmUp needs plain_steps"),
                rMaxReachedAt: try #require(rMaxReachedAt, "linearWarmUp needs r_max_reached_at"),
                dMaxReachedAt: try #require(dMaxReachedAt, "linearWarmUp needs d_max_reached_at"))
        default:
            throw CocoaError(.coderInvalidValue, userInfo: [NSLocalizedDescriptionKey: "unknown renormalization \(kind)"])
        }
    }
}

extension GoldenCase.RunningAverageSpec {
    func runningAverage() throws -> RunningAverage {
        switch kind {
        case "newBatchWeight": .newBatchWeight(Float(try #require(value, "newBatchWeight needs a value")))
        case "oldValueWeight": .oldValueWeight(Float(try #require(value, "oldValueWeight needs a value")))
        case "cumulativeAverage": .cumulativeAverage
        default:
            throw CocoaError(.coderInvalidValue, userInfo: [NSLocalizedDescriptionKey: "unknown running average \(kind)"])
        }
    }
}

// MARK: - Comparison

/// Compares NormKit's values with the reference for one case and names the
/// case, the quantity and the index (flat, per axis and feature) in every failure.
struct GoldenChecker {
    static let relativeTolerance = 1e-5
    /// Ulps of the Float running mean allowed in inference: ≤ ½ ulp per update
    /// (1.5 after three), so K = max(2, t/2) after t training steps.
    var runningMeanUlps: Double { max(2, Double(goldenCase.training.count) / 2) }

    let goldenCase: GoldenCase
    let channels: Int
    let inner: Int

    init(_ goldenCase: GoldenCase) {
        self.goldenCase = goldenCase
        let shape = goldenCase.shape
        let axis = goldenCase.featureAxis < 0 ? goldenCase.featureAxis + shape.count : goldenCase.featureAxis
        channels = shape[axis]
        inner = shape[(axis + 1)...].reduce(1, *)
    }

    /// The feature of flat index `index` in a tensor of the case's shape.
    func channel(of index: Int) -> Int { (index / inner) % channels }

    func position(of index: Int) -> String {
        var rest = index
        var coordinates = [Int](repeating: 0, count: goldenCase.shape.count)
        for axis in goldenCase.shape.indices.reversed() {
            coordinates[axis] = rest % goldenCase.shape[axis]
            rest /= goldenCase.shape[axis]
        }
        return "(" + coordinates.map(String.init).joined(separator: ", ") + ")"
    }

    /// Checks |actual − expected| ≤ 1e-5·max(floor, |expected|) + extra(index) at every index.
    /// `perFeature` values are indexed by feature; others have the case's shape.
    func expectClose(
        _ actual: [Float]?, _ expected: [Double], _ quantity: String, perFeature: Bool = false,
        relativeFloor: Double = 1, extra: (Int) -> Double = { _ in 0 },
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let name = goldenCase.name
        guard let actual else {
            Issue.record("\(name): \(quantity) is missing (expected \(expected.count) values)", sourceLocation: sourceLocation)
            return
        }
        guard actual.count == expected.count else {
            Issue.record("\(name): \(quantity) has \(actual.count) values, expected \(expected.count)",
                         sourceLocation: sourceLocation)
            return
        }
        var failures: [String] = []
        var worst = 0.0
        for i in expected.indices {
            let a = Double(actual[i]), b = expected[i]
            let tolerance = Self.relativeTolerance * max(relativeFloor, abs(b)) + extra(i)
            let difference = abs(a - b)
            guard !(difference <= tolerance) else { continue }   // NaN fails too
            worst = max(worst, difference.isNaN ? .infinity : difference / tolerance)
            let place = perFeature ? "[\(i)] (feature \(i))" : "[\(i)] at \(position(of: i)), feature \(channel(of: i))"
            failures.append("\(name): \(quantity)\(place): got \(a), expected \(b), |Δ| = \(difference) > tolerance \(tolerance)")
        }
        guard !failures.isEmpty else { return }
        let more = failures.count > 4 ? "\n… and \(failures.count - 4) more" : ""
        Issue.record("""
            \(failures.prefix(4).joined(separator: "\n"))\(more)
            (\(name): \(failures.count) of \(expected.count) values of \(quantity) out of tolerance; worst |Δ|/tolerance = \(worst))
            """, sourceLocation: sourceLocation)
    }

    /// Per-feature statistics: purely relative (see the header).
    func expectStatistic(_ actual: [Float]?, _ expected: [Double], _ quantity: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
        expectClose(actual, expected, quantity, perFeature: true, relativeFloor: 0, sourceLocation: sourceLocation)
    }

    // MARK: The Float running mean's resolution (inference with running statistics)

    /// u per feature: the ulp of the running mean as NormKit stores it.
    func runningMeanUlp(_ runningMean: [Double]) -> [Double] { runningMean.map { Double(Float($0).ulp) } }

    func gammaMagnitude(_ c: Int) -> Double { goldenCase.gamma.map { abs($0[c]) } ?? 1 }

    /// K·u·|γ|·s per element of y.
    func outputResolution(runningMean: [Double], inverseStd: [Double]) -> (Int) -> Double {
        let u = runningMeanUlp(runningMean)
        let terms = (0..<channels).map { c in runningMeanUlps * u[c] * gammaMagnitude(c) * inverseStd[c] }
        return { terms[channel(of: $0)] }
    }

    /// K·u·s·Σ|dy| per feature of dγ.
    func gammaGradientResolution(runningMean: [Double], inverseStd: [Double], dy: [Double]) -> (Int) -> Double {
        let u = runningMeanUlp(runningMean)
        var sumAbsDy = [Double](repeating: 0, count: channels)
        for i in dy.indices { sumAbsDy[channel(of: i)] += abs(dy[i]) }
        let terms = (0..<channels).map { c in runningMeanUlps * u[c] * inverseStd[c] * sumAbsDy[c] }
        return { terms[$0] }
    }
}

func floats(_ values: [Double]) -> [Float] { values.map { Float($0) } }

/// The JSON fixture `name`.json from the test bundle, its snake_case keys read as camelCase.
func decodeFixture<Fixture: Decodable>(named name: String) throws -> Fixture {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json") else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "\(name).json is not in the test bundle"])
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(Fixture.self, from: Data(contentsOf: url))
}

// MARK: - Tests

@Suite("BatchNorm against golden values from an independent NumPy float64 implementation")
struct BatchNormGoldenTests {
    @Test("the fixture loads and holds every case, each with at least three training steps")
    func fixtureHoldsEveryCase() throws {
        let fixture = try Golden.fixture()
        let names = fixture.cases.map(\.name)
        #expect(Set(names) == Golden.expectedCaseNames, "cases in batchnorm_golden.json: \(names)")
        #expect(names.count == Set(names).count, "duplicate case names: \(names)")
        for goldenCase in fixture.cases {
            #expect(goldenCase.training.count >= 3, "\(goldenCase.name): \(goldenCase.training.count) training steps")
            #expect(goldenCase.renormalization == nil || goldenCase.tracksRunningStatistics,
                    "\(goldenCase.name): renormalization without running statistics")
            #expect((goldenCase.gamma != nil) == goldenCase.affine, "\(goldenCase.name): γ present iff affine")
        }
    }

    @Test("training steps, running statistics, gradients and inference match the reference",
          arguments: try Golden.caseNames())
    func matchesReference(caseName: String) throws {
        let golden = try Golden.goldenCase(named: caseName)
        let check = GoldenChecker(golden)
        let layer = BatchNorm(
            featureCount: check.channels, featureAxis: golden.featureAxis, epsilon: Float(golden.epsilon),
            runningAverage: try golden.runningAverage.runningAverage(), affine: golden.affine,
            tracksRunningStatistics: golden.tracksRunningStatistics,
            unbiasedRunningVariance: golden.unbiasedRunningVariance,
            renormalization: try golden.renormalization?.renormalization(), ghostBatchSize: golden.ghostBatchSize)
        if golden.affine {
            let gamma = try #require(golden.gamma, "\(caseName): affine case without gamma")
            let beta = try #require(golden.beta, "\(caseName): affine case without beta")
            try #require(layer.weight, "\(caseName): affine layer without weight").value = Tensor(floats(gamma))
            try #require(layer.bias, "\(caseName): affine layer without bias").value = Tensor(floats(beta))
        } else {
            #expect(layer.weight == nil && layer.bias == nil, "\(caseName): affine off but the layer has γ/β")
        }

        // Training steps on different batches; gradients at the last one.
        layer.setMode(.training)
        for (index, step) in golden.training.enumerated() {
            let label = "training step \(index + 1)"
            let isLast = index == golden.training.count - 1
            layer.weight?.clearGradient()
            layer.bias?.clearGradient()
            let inputNode = GradientNode(leaf: "x")
            let x = Tensor(floats(step.x), shape: golden.shape)
            let y = try layer(isLast ? x.attached(to: inputNode) : x)

            #expect(y.shape == golden.shape, "\(caseName): \(label) y has shape \(y.shape), expected \(golden.shape)")
            check.expectClose(y.scalars, step.y, "\(label) y")
            let statistics = try #require(layer.lastBatchStatistics, "\(caseName): \(label) left no batch statistics")
            check.expectStatistic(statistics.mean, step.batchMean, "\(label) batch mean")
            check.expectStatistic(statistics.variance, step.batchVariance, "\(label) batch variance (biased)")
            check.expectStatistic(statistics.inverseStandardDeviation, step.inverseStd, "\(label) 1/√(σ² + ε)")
            try expectRenormalization(layer, check, step: step, index: index, label: label)
            expectRunningState(layer, check, mean: step.runningMean, variance: step.runningVariance,
                               tracked: step.numBatchesTracked, label: "after \(label)")

            guard isLast else { continue }
            let gradients = golden.lastStepGradients
            (y * Tensor(floats(gradients.dy), shape: golden.shape)).sum().backward()
            check.expectClose(inputNode.gradient?.scalars, gradients.dx, "\(label) dx")
            try expectAffineGradients(layer, check, dgamma: gradients.dgamma, dbeta: gradients.dbeta, label: label)
        }

        // Inference on a fourth batch: the running statistics as constants (or
        // the batch's own when the layer tracks none); nothing is updated.
        layer.setMode(.inference)
        layer.weight?.clearGradient()
        layer.bias?.clearGradient()
        let last = try #require(golden.training.last, "\(caseName): no training steps")
        let inference = golden.inference
        let usesRunningMean = golden.tracksRunningStatistics
        let inputNode = GradientNode(leaf: "x")
        let y = try layer(Tensor(floats(inference.x), shape: golden.shape).attached(to: inputNode))

        #expect(y.shape == golden.shape, "\(caseName): inference y has shape \(y.shape), expected \(golden.shape)")
        check.expectClose(y.scalars, inference.y, "inference y",
                          extra: usesRunningMean
                              ? check.outputResolution(runningMean: inference.mean, inverseStd: inference.inverseStd)
                              : { _ in 0 })
        expectRunningState(layer, check, mean: last.runningMean, variance: last.runningVariance,
                           tracked: last.numBatchesTracked, label: "after the inference forward (unchanged)")

        (y * Tensor(floats(inference.dy), shape: golden.shape)).sum().backward()
        check.expectClose(inputNode.gradient?.scalars, inference.dx, "inference dx")
        try expectAffineGradients(
            layer, check, dgamma: inference.dgamma, dbeta: inference.dbeta, label: "inference",
            gammaExtra: usesRunningMean
                ? check.gammaGradientResolution(runningMean: inference.mean, inverseStd: inference.inverseStd,
                                                dy: inference.dy)
                : { _ in 0 })
    }

    /// Batch Renormalization's limits for the step and its r and d per ghost batch;
    /// without renormalization, none are reported.
    private func expectRenormalization(_ layer: BatchNorm, _ check: GoldenChecker, step: GoldenCase.TrainingStep,
                                       index: Int, label: String) throws {
        let name = check.goldenCase.name
        guard let renormalization = layer.renormalization else {
            #expect(step.r == nil && step.d == nil, "\(name): \(label) reference has r, d without renormalization")
            #expect(layer.lastRenormalizationCorrections.isEmpty, "\(name): \(label) r, d without renormalization")
            return
        }
        // The step the schedule sees is numBatchesTracked before the batch: `index` here.
        let limits = renormalization.limits(atStep: index)
        let rMax = try #require(step.rMax, "\(name): \(label) reference lacks r_max")
        let dMax = try #require(step.dMax, "\(name): \(label) reference lacks d_max")
        check.expectStatistic([limits.rMax, limits.dMax], [rMax, dMax], "\(label) (rMax, dMax) of the schedule")
        let corrections = layer.lastRenormalizationCorrections
        check.expectClose(corrections.flatMap(\.r), try #require(step.r, "\(name): \(label) reference lacks r"),
                          "\(label) r per ghost batch", perFeature: true)
        check.expectClose(corrections.flatMap(\.d), try #require(step.d, "\(name): \(label) reference lacks d"),
                          "\(label) d per ghost batch", perFeature: true)
    }

    private func expectRunningState(_ layer: BatchNorm, _ check: GoldenChecker, mean: [Double]?, variance: [Double]?,
                                    tracked: Int?, label: String) {
        let name = check.goldenCase.name
        guard let mean, let variance, let tracked else {
            // No running statistics: none exist and none are counted.
            #expect(layer.runningMean == nil, "\(name): a running mean exists \(label) without tracking")
            #expect(layer.runningVariance == nil, "\(name): a running variance exists \(label) without tracking")
            #expect(layer.numBatchesTracked == 0,
                    "\(name): numBatchesTracked \(label) is \(layer.numBatchesTracked), expected 0 without tracking")
            return
        }
        check.expectStatistic(layer.runningMean?.scalars, mean, "running mean \(label)")
        check.expectStatistic(layer.runningVariance?.scalars, variance, "running variance \(label)")
        #expect(layer.numBatchesTracked == tracked,
                "\(name): numBatchesTracked \(label) is \(layer.numBatchesTracked), expected \(tracked)")
    }

    private func expectAffineGradients(_ layer: BatchNorm, _ check: GoldenChecker, dgamma: [Double]?, dbeta: [Double]?,
                                       label: String, gammaExtra: (Int) -> Double = { _ in 0 }) throws {
        let name = check.goldenCase.name
        guard check.goldenCase.affine else {
            #expect(dgamma == nil && dbeta == nil, "\(name): \(label) reference has γ/β gradients without affine")
            return
        }
        let dgamma = try #require(dgamma, "\(name): \(label) reference lacks dγ")
        let dbeta = try #require(dbeta, "\(name): \(label) reference lacks dβ")
        check.expectClose(layer.weight?.gradient?.scalars, dgamma, "\(label) dγ (weight.gradient)", perFeature: true,
                          extra: gammaExtra)
        check.expectClose(layer.bias?.gradient?.scalars, dbeta, "\(label) dβ (bias.gradient)", perFeature: true)
    }
}
