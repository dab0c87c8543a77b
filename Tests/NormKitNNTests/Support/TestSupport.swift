// Shared machinery for the NormKitNN tests: deterministic test data, a Double
// reference of batch normalization written the slow and obvious way, central
// finite differences of Double references, and tolerance checks that report the
// worst offenders.
//
// Gradients are never checked by differentiating NormKit's own Float forward
// numerically (Float central differences are noise). Each test writes its
// forward as a Double reference, differentiates that numerically (h = 1e-6),
// and compares with what NormKit's autodiff sends back.

@testable import NormKitCore
@testable import NormKitNN
import Synchronization
import Testing

// MARK: - Test data

/// `count` values drawn uniformly from `range` and rounded to Float, so that a
/// Double reference sees exactly the numbers NormKit sees. Deterministic in `seed`.
func randomDoubles(_ count: Int, in range: ClosedRange<Double> = -1...1, seed: UInt64) -> [Double] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Double(Float(Double.random(in: range, using: &generator))) }
}

/// A NormKit tensor holding `values` (rounded to Float).
func tensor(_ values: [Double], shape: [Int]) -> Tensor {
    Tensor(values.map { Float($0) }, shape: shape)
}

/// A rank-1 NormKit tensor holding `values`.
func tensor(_ values: [Double]) -> Tensor { tensor(values, shape: [values.count]) }

/// The exact values of a NormKit tensor, as Doubles.
func doubles(_ tensor: Tensor) -> [Double] { tensor.scalars.map { Double($0) } }

/// A tensor that is a leaf of the autodiff graph, and the node its gradient lands in.
func leaf(_ values: [Double], shape: [Int]) -> (tensor: Tensor, node: GradientNode) {
    let node = GradientNode(leaf: "test input")
    return (tensor(values, shape: shape).attached(to: node), node)
}

/// A `Linear` whose initial weights come from `seed`, not from `GlobalRandom`
/// (tests running in parallel must not draw from the shared stream).
func makeLinear(_ inFeatures: Int, _ outFeatures: Int, seed: UInt64) -> Linear {
    Linear(inFeatures, outFeatures, generator: SeededGenerator(seed: seed))
}

/// Held while a test counts tensor allocations: the counter watches one thread
/// at a time, and tests run in parallel.
private let allocationCountLock = Mutex(())

/// How many tensor storages `body` allocates on the calling thread (debug builds),
/// waiting while another test counts.
func countingTensorAllocations(_ body: () throws -> Void) rethrows -> Int {
    try allocationCountLock.withLock { _ in try TensorStorage.allocations(during: body) }
}

/// A pass-through layer that records, for each forward, the mode it ran in and
/// whether the autodiff graph was being recorded.
final class ModeProbe: Module {
    private(set) var observations: [(mode: Mode, recording: Bool)] = []
    override init() { super.init() }
    override func forward(_ input: Tensor) throws -> Tensor {
        observations.append((mode, Autodiff.isRecording))
        return input
    }
}

/// Σ wᵢ·yᵢ: the scalar whose gradient a check compares (seeding backward with w).
func weightedSum(_ y: [Double], _ w: [Double]) -> Double {
    precondition(y.count == w.count, "weightedSum: \(y.count) values, \(w.count) weights")
    return zip(y, w).reduce(0) { $0 + $1.0 * $1.1 }
}

/// Two Gaussian blobs in `features` dimensions, centred at ±`separation`/2 on
/// every axis with unit variance; label 0 for the negative blob, 1 for the
/// positive one, interleaved. Linearly separable in practice for separation ≥ 2.
func gaussianBlobs(count: Int, features: Int, separation: Float = 2, seed: UInt64) -> (x: Tensor, y: [Int]) {
    var generator = SeededGenerator(seed: seed)
    var values: [Float] = []
    var labels: [Int] = []
    for i in 0..<count {
        let label = i % 2
        let centre = (label == 0 ? -separation : separation) / 2
        for _ in 0..<features { values.append(centre + generator.nextStandardNormal()) }
        labels.append(label)
    }
    return (Tensor(values, shape: [count, features]), labels)
}

// MARK: - Reference batch normalization

/// Batch normalization in Double, computed element by element from the
/// definition (Ioffe & Szegedy 2015, Algorithm 1):
/// y = γ·(x − μ)/√(σ² + ε) + β per feature on `featureAxis`, with μ and the
/// biased σ² over every value sharing the feature.
enum ReferenceBatchNorm {
    struct Result {
        var output: [Double]
        /// The batch mean per feature.
        var mean: [Double]
        /// The batch's biased variance per feature.
        var variance: [Double]
        /// Values per feature (m).
        var count: Int

        /// The unbiased variance σ²·m/(m − 1) per feature.
        var unbiasedVariance: [Double] { variance.map { $0 * Double(count) / Double(count - 1) } }
    }

    /// The feature (channel) that element `flat` of a row-major `shape` belongs to.
    static func feature(of flat: Int, shape: [Int], featureAxis: Int) -> Int {
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        var rest = flat
        for dimension in stride(from: shape.count - 1, through: 0, by: -1) {
            if dimension == axis { return rest % shape[dimension] }
            rest /= shape[dimension]
        }
        preconditionFailure("axis \(featureAxis) is outside shape \(shape)")
    }

    /// Normalizes with the batch's own statistics, or with `statistics` when
    /// given (inference: running mean and running variance).
    static func forward(
        _ x: [Double], shape: [Int], featureAxis: Int, gamma: [Double]?, beta: [Double]?, epsilon: Double,
        statistics: (mean: [Double], variance: [Double])? = nil
    ) -> Result {
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        let features = shape[axis]
        let count = x.count / features
        var mean = [Double](repeating: 0, count: features)
        var variance = [Double](repeating: 0, count: features)
        for (i, value) in x.enumerated() { mean[feature(of: i, shape: shape, featureAxis: featureAxis)] += value }
        mean = mean.map { $0 / Double(count) }
        for (i, value) in x.enumerated() {
            let c = feature(of: i, shape: shape, featureAxis: featureAxis)
            variance[c] += (value - mean[c]) * (value - mean[c])
        }
        variance = variance.map { $0 / Double(count) }
        let (useMean, useVariance) = statistics ?? (mean, variance)
        let output = x.enumerated().map { i, value -> Double in
            let c = feature(of: i, shape: shape, featureAxis: featureAxis)
            let normalized = (value - useMean[c]) / (useVariance[c] + epsilon).squareRoot()
            return (gamma?[c] ?? 1) * normalized + (beta?[c] ?? 0)
        }
        return Result(output: output, mean: mean, variance: variance, count: count)
    }
}

// MARK: - Reference ghost batches and Batch Renormalization

extension ReferenceBatchNorm {
    /// Batch Renormalization's r and d for one (ghost) batch, from the definition
    /// (Ioffe 2017): σ = √(v + ε), r = clip(σ_B/σ_run, 1/rMax, rMax),
    /// d = clip((μ_B − μ_run)/σ_run, −dMax, dMax).
    struct Correction {
        var r: [Double]
        var d: [Double]
    }

    static func correction(batch: Result, runningMean: [Double], runningVariance: [Double], epsilon: Double,
                           rMax: Double, dMax: Double) -> Correction {
        let features = batch.mean.count
        var r = [Double](repeating: 1, count: features), d = [Double](repeating: 0, count: features)
        for c in 0..<features {
            let runningStd = (runningVariance[c] + epsilon).squareRoot()
            r[c] = min(max((batch.variance[c] + epsilon).squareRoot() / runningStd, 1 / rMax), rMax)
            d[c] = min(max((batch.mean[c] - runningMean[c]) / runningStd, -dMax), dMax)
        }
        return Correction(r: r, d: d)
    }

    /// The consecutive runs of `ghostBatchSize` samples along axis 0 (the last may
    /// be shorter), as (first sample, sample count); the whole batch when nil.
    static func ghostBatches(samples: Int, ghostBatchSize: Int?) -> [(start: Int, count: Int)] {
        guard let size = ghostBatchSize else { return [(0, samples)] }
        return stride(from: 0, to: samples, by: size).map { ($0, min(size, samples - $0)) }
    }

    /// Batch normalization with each ghost batch normalized by its own statistics,
    /// and y = γ·(x̂·r + d) + β when `corrections` (one per ghost batch) are given.
    /// Returns the output and each ghost batch's statistics.
    static func ghostForward(
        _ x: [Double], shape: [Int], featureAxis: Int, gamma: [Double]?, beta: [Double]?, epsilon: Double,
        ghostBatchSize: Int?, corrections: [Correction]? = nil
    ) -> (output: [Double], groups: [Result]) {
        let perSample = x.count / shape[0]
        let sampleShape = Array(shape.dropFirst())
        var output: [Double] = []
        var groups: [Result] = []
        for (k, run) in ghostBatches(samples: shape[0], ghostBatchSize: ghostBatchSize).enumerated() {
            let part = Array(x[run.start * perSample..<(run.start + run.count) * perSample])
            let partShape = [run.count] + sampleShape
            let normalized = forward(part, shape: partShape, featureAxis: featureAxis, gamma: nil, beta: nil,
                                     epsilon: epsilon)
            groups.append(normalized)
            for (i, value) in normalized.output.enumerated() {
                let c = feature(of: i, shape: partShape, featureAxis: featureAxis)
                let corrected = value * (corrections?[k].r[c] ?? 1) + (corrections?[k].d[c] ?? 0)
                output.append((gamma?[c] ?? 1) * corrected + (beta?[c] ?? 0))
            }
        }
        return (output, groups)
    }
}

// MARK: - Finite differences

/// Central differences of `f` at `x` for every coordinate, in Double.
func centralDifferences(at x: [Double], step h: Double = 1e-6, of f: ([Double]) -> Double) -> [Double] {
    x.indices.map { i in
        var plus = x, minus = x
        plus[i] += h
        minus[i] -= h
        return (f(plus) - f(minus)) / (2 * h)
    }
}

// MARK: - Tolerance checks

/// Whether |actual − expected| ≤ absolute + relative·|expected|.
func isClose(_ actual: Double, _ expected: Double, relative: Double, absolute: Double = 0) -> Bool {
    if actual == expected { return true }   // also covers matching infinities
    return abs(actual - expected) <= absolute + relative * abs(expected)
}

/// Expects `actual` to match `expected` elementwise within
/// `absolute + relative·|expected|`; on failure records one issue that lists
/// the worst offenders, so a broken layer does not produce a hundred issues.
func expectClose(
    _ actual: [Double], _ expected: [Double], relative: Double, absolute: Double = 0,
    _ what: @autoclosure () -> String = "values", sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(what()): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    let failures = actual.indices.filter {
        !isClose(actual[$0], expected[$0], relative: relative, absolute: absolute)
    }
    guard !failures.isEmpty else { return }
    let worst = failures.sorted {
        let a = abs(actual[$0] - expected[$0]), b = abs(actual[$1] - expected[$1])
        return a.isNaN ? true : b.isNaN ? false : a > b
    }
    let listing = worst.prefix(5).map { "[\($0)] \(actual[$0]) vs \(expected[$0])" }.joined(separator: ", ")
    let message = "\(what()): \(failures.count) of \(actual.count) differ beyond \(relative) relative / "
        + "\(absolute) absolute; worst: \(listing)"
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

/// `expectClose` for Float results.
func expectClose(
    _ actual: [Float], _ expected: [Double], relative: Double, absolute: Double = 0,
    _ what: @autoclosure () -> String = "values", sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose(actual.map { Double($0) }, expected, relative: relative, absolute: absolute, what(),
                sourceLocation: sourceLocation)
}

/// `expectClose` for a NormKit tensor (nil counts as a failure: a gradient that never arrived).
func expectClose(
    _ actual: Tensor?, _ expected: [Double], relative: Double, absolute: Double = 0,
    _ what: @autoclosure () -> String = "values", sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let actual else {
        Issue.record("\(what()): no tensor (nil)", sourceLocation: sourceLocation)
        return
    }
    expectClose(actual.scalars, expected, relative: relative, absolute: absolute, what(), sourceLocation: sourceLocation)
}

/// `expectClose` for one value.
func expectClose(
    _ actual: Float, _ expected: Double, relative: Double, absolute: Double = 0,
    _ what: @autoclosure () -> String = "value", sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose([actual], [expected], relative: relative, absolute: absolute, what(), sourceLocation: sourceLocation)
}

// MARK: - A small classification problem for fit, the fused step and trainOnBatch

/// Three classes of 5 features; 45 examples, so batches of 8 end with a partial batch of 5.
func threeClassData(seed: UInt64) -> (x: Tensor, y: [Int]) {
    var generator = SeededGenerator(seed: seed)
    let count = 45, features = 5
    var values: [Float] = [], labels: [Int] = []
    for index in 0..<count {
        let label = index % 3
        labels.append(label)
        for feature in 0..<features {
            values.append(generator.nextStandardNormal() + (feature % 3 == label ? 2 : 0))
        }
    }
    return (Tensor(values, shape: [count, features]), labels)
}

/// Linear(5, 8) → BatchNorm1d(8) → ReLU → Linear(8, 3) [→ Softmax], from explicit seeds.
func chainModel(seed: UInt64, softmax: Bool = false) -> (Sequential, BatchNorm1d) {
    let batchNorm = BatchNorm1d(8)
    let model = Sequential {
        makeLinear(5, 8, seed: seed)
        batchNorm
        ReLU()
        makeLinear(8, 3, seed: seed + 1)
        if softmax { Softmax() }
    }
    return (model, batchNorm)
}
