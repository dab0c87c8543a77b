// Shared machinery for the NormKitCore tests: a Double reference tensor, a
// tolerance check that reports where and by how much values differ, and the
// finite-difference gradient check every differentiable op goes through.
//
// The gradient check never differentiates NormKit's own Float forward
// numerically (Float central differences are noise at h ≈ 1e-3 and biased at
// larger h). Instead each test writes a small Double reference of the op's
// forward; the numeric gradient of L = Σ w ⊙ op(x), for fixed random weights w,
// is taken on that reference with h = 1e-6, and compared with the gradient
// NormKit's autodiff sends back when seeded with w.

import NormKitCore
import Testing

// MARK: - Reference tensor

/// A row-major array of Doubles with a shape: what the reference
/// implementations in these tests compute with.
struct DoubleTensor: Sendable, CustomStringConvertible {
    var shape: [Int]
    var values: [Double]

    init(_ values: [Double], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
    }

    /// The exact values of a NormKit tensor.
    init(_ tensor: Tensor) {
        self.init(tensor.scalars.map { Double($0) }, shape: tensor.shape)
    }

    var count: Int { values.count }

    /// The same values as a NormKit tensor (rounded to Float).
    var tensor: Tensor { Tensor(values.map { Float($0) }, shape: shape) }

    func map(_ transform: (Double) -> Double) -> DoubleTensor {
        DoubleTensor(values.map(transform), shape: shape)
    }

    subscript(index: [Int]) -> Double {
        get { values[Layout.flatIndex(index, in: shape)] }
        set { values[Layout.flatIndex(index, in: shape)] = newValue }
    }

    var description: String { "DoubleTensor(shape: \(shape), \(values.prefix(8)))" }
}

/// Row-major index arithmetic, written the slow and obvious way.
enum Layout {
    static func multiIndex(of flat: Int, in shape: [Int]) -> [Int] {
        var index = [Int](repeating: 0, count: shape.count)
        var rest = flat
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        return index
    }

    static func flatIndex(_ index: [Int], in shape: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var flat = 0
        for axis in 0..<shape.count { flat = flat * shape[axis] + index[axis] }
        return flat
    }
}

// MARK: - Reference operations

enum Reference {
    /// NumPy broadcasting: trailing axes aligned, size-1 axes repeated.
    static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = max(a.count, b.count)
        let paddedA = [Int](repeating: 1, count: rank - a.count) + a
        let paddedB = [Int](repeating: 1, count: rank - b.count) + b
        return zip(paddedA, paddedB).map { sizeA, sizeB in
            precondition(sizeA == sizeB || sizeA == 1 || sizeB == 1, "reference cannot broadcast \(a) and \(b)")
            return max(sizeA, sizeB)
        }
    }

    /// The element of `x` that position `index` of a broadcast result reads.
    static func broadcastElement(_ x: DoubleTensor, at index: [Int]) -> Double {
        let offset = index.count - x.shape.count
        let source = x.shape.indices.map { axis in x.shape[axis] == 1 ? 0 : index[axis + offset] }
        return x[source]
    }

    static func elementwise(_ a: DoubleTensor, _ b: DoubleTensor, _ combine: (Double, Double) -> Double) -> DoubleTensor {
        let shape = broadcastShape(a.shape, b.shape)
        let count = shape.reduce(1, *)
        let values = (0..<count).map { flat -> Double in
            let index = Layout.multiIndex(of: flat, in: shape)
            return combine(broadcastElement(a, at: index), broadcastElement(b, at: index))
        }
        return DoubleTensor(values, shape: shape)
    }

    /// Σ over `axes` (negative axes count from the end).
    static func sum(_ x: DoubleTensor, alongAxes axes: [Int], keepingDimensions: Bool) -> DoubleTensor {
        let reduced = Set(axes.map { $0 < 0 ? $0 + x.shape.count : $0 })
        let keptShape = x.shape.indices.map { reduced.contains($0) ? 1 : x.shape[$0] }
        var result = DoubleTensor([Double](repeating: 0, count: keptShape.reduce(1, *)), shape: keptShape)
        for flat in 0..<x.count {
            var index = Layout.multiIndex(of: flat, in: x.shape)
            for axis in reduced { index[axis] = 0 }
            result[index] += x.values[flat]
        }
        if !keepingDimensions {
            result.shape = x.shape.indices.filter { !reduced.contains($0) }.map { x.shape[$0] }
        }
        return result
    }

    /// (m, k) · (k, n) → (m, n).
    static func matmul(_ a: DoubleTensor, _ b: DoubleTensor) -> DoubleTensor {
        let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
        precondition(b.shape[0] == k)
        var result = DoubleTensor([Double](repeating: 0, count: m * n), shape: [m, n])
        for i in 0..<m {
            for j in 0..<n {
                var total = 0.0
                for p in 0..<k { total += a.values[i * k + p] * b.values[p * n + j] }
                result.values[i * n + j] = total
            }
        }
        return result
    }

    static func transposed(_ a: DoubleTensor) -> DoubleTensor {
        let (rows, columns) = (a.shape[0], a.shape[1])
        var result = DoubleTensor([Double](repeating: 0, count: rows * columns), shape: [columns, rows])
        for r in 0..<rows { for c in 0..<columns { result.values[c * rows + r] = a.values[r * columns + c] } }
        return result
    }
}

// MARK: - Test data

/// Values drawn uniformly from `range` and rounded to Float, so that the Double
/// reference sees exactly the numbers NormKit sees. Deterministic in `seed`.
func randomValues(_ shape: [Int], in range: ClosedRange<Double> = -1...1, seed: UInt64) -> DoubleTensor {
    var generator = SeededGenerator(seed: seed)
    let values = (0..<shape.reduce(1, *)).map { _ in Double(Float(Double.random(in: range, using: &generator))) }
    return DoubleTensor(values, shape: shape)
}

/// Like `randomValues`, but every value has |x| ≥ `margin` (random sign), for
/// ops with a kink or a pole at 0.
func randomValuesAwayFromZero(_ shape: [Int], in range: ClosedRange<Double>, seed: UInt64) -> DoubleTensor {
    precondition(range.lowerBound > 0)
    var generator = SeededGenerator(seed: seed)
    let values = (0..<shape.reduce(1, *)).map { _ -> Double in
        let magnitude = Double.random(in: range, using: &generator)
        return Double(Float(Bool.random(using: &generator) ? magnitude : -magnitude))
    }
    return DoubleTensor(values, shape: shape)
}

/// A tensor that is a leaf of the autodiff graph, and the node its gradient lands in.
func makeLeaf(_ values: DoubleTensor) -> (tensor: Tensor, node: GradientNode) {
    let node = GradientNode(leaf: "test input")
    return (values.tensor.attached(to: node), node)
}

// MARK: - Tolerance checks

/// Whether |actual − expected| ≤ absolute + relative·|expected|.
func isClose(_ actual: Double, _ expected: Double, relative: Double, absolute: Double) -> Bool {
    if actual == expected { return true }   // also covers matching infinities
    return abs(actual - expected) <= absolute + relative * abs(expected)
}

/// Expects `actual` to match `expected` elementwise within
/// `absolute + relative·|expected|`; on failure records one issue listing the
/// worst offenders, so a broken kernel does not produce a thousand issues.
func expectClose(
    _ actual: [Float], _ expected: [Double], relative: Double, absolute: Double,
    _ what: @autoclosure () -> String = "values",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(what()): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var failures: [(index: Int, actual: Float, expected: Double)] = []
    for i in actual.indices where !isClose(Double(actual[i]), expected[i], relative: relative, absolute: absolute) {
        failures.append((i, actual[i], expected[i]))
    }
    guard !failures.isEmpty else { return }
    let worst = failures.sorted { abs(Double($0.actual) - $0.expected) > abs(Double($1.actual) - $1.expected) }
    let listing = worst.prefix(5).map { "[\($0.index)] \($0.actual) vs \($0.expected)" }.joined(separator: ", ")
    Issue.record(
        "\(what()): \(failures.count) of \(actual.count) differ beyond \(relative) relative / \(absolute) absolute; worst: \(listing)",
        sourceLocation: sourceLocation)
}

/// `expectClose` for a NormKit tensor against a reference, shapes included.
func expectClose(
    _ actual: Tensor, _ expected: DoubleTensor, relative: Double, absolute: Double,
    _ what: @autoclosure () -> String = "values",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.shape == expected.shape, "\(what()): shape", sourceLocation: sourceLocation)
    expectClose(actual.scalars, expected.values, relative: relative, absolute: absolute, what(), sourceLocation: sourceLocation)
}

// MARK: - Gradient check

/// Central differences of L(x) = Σ w ⊙ reference(x) with respect to every
/// element of every input, in Double.
func numericGradients(
    of reference: ([DoubleTensor]) -> DoubleTensor, at inputs: [DoubleTensor], weights: DoubleTensor,
    step h: Double = 1e-6
) -> [DoubleTensor] {
    func loss(_ point: [DoubleTensor]) -> Double {
        let output = reference(point)
        precondition(output.count == weights.count, "reference output \(output.shape) vs weights \(weights.shape)")
        return zip(output.values, weights.values).reduce(0) { $0 + $1.0 * $1.1 }
    }
    return inputs.indices.map { i in
        var gradient = inputs[i].map { _ in 0 }
        for j in 0..<inputs[i].count {
            var plus = inputs, minus = inputs
            plus[i].values[j] += h
            minus[i].values[j] -= h
            gradient.values[j] = (loss(plus) - loss(minus)) / (2 * h)
        }
        return gradient
    }
}

/// Checks an op's forward against `reference` and its autodiff gradients
/// against central differences of `reference`, for every input.
///
/// Every input becomes a graph leaf; `op` maps the leaves to the output; the
/// output is back-propagated with a fixed random seed gradient w (so the
/// gradient checked is that of Σ w ⊙ op(x)).
func expectGradientsMatchFiniteDifferences(
    at inputs: [DoubleTensor],
    relative: Double = 1e-4, absolute: Double = 1e-5,
    forwardRelative: Double = 1e-5, forwardAbsolute: Double = 1e-6,
    weightSeed: UInt64 = 0x5EED, step: Double = 1e-6,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ op: ([Tensor]) -> Tensor,
    reference: ([DoubleTensor]) -> DoubleTensor
) {
    let leaves = inputs.map(makeLeaf)
    let output = op(leaves.map(\.tensor))
    let expected = reference(inputs)
    expectClose(output, expected, relative: forwardRelative, absolute: forwardAbsolute, "forward",
                sourceLocation: sourceLocation)
    guard output.shape == expected.shape else { return }
    #expect(output.requiresGradient, "the output of an op on graph leaves records a node", sourceLocation: sourceLocation)

    let weights = randomValues(output.shape, in: -1...1, seed: weightSeed)
    output.backward(gradient: weights.tensor)
    let numeric = numericGradients(of: reference, at: inputs, weights: weights, step: step)
    for (i, leaf) in leaves.enumerated() {
        guard let gradient = leaf.node.gradient else {
            Issue.record("input \(i) received no gradient", sourceLocation: sourceLocation)
            continue
        }
        expectClose(gradient, numeric[i], relative: relative, absolute: absolute, "gradient of input \(i)",
                    sourceLocation: sourceLocation)
    }
}
