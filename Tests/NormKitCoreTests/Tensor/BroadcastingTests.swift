import NormKitCore
import Testing

/// The four broadcasting binary operators, with their Double meaning.
enum BinaryOperator: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case add, subtract, multiply, divide

    func apply(_ a: Tensor, _ b: Tensor) -> Tensor {
        switch self {
        case .add: a + b
        case .subtract: a - b
        case .multiply: a * b
        case .divide: a / b
        }
    }

    func reference(_ a: Double, _ b: Double) -> Double {
        switch self {
        case .add: a + b
        case .subtract: a - b
        case .multiply: a * b
        case .divide: a / b
        }
    }

    var testDescription: String { rawValue }
}

/// A pair of operand shapes that broadcast together.
struct ShapePair: Sendable, CustomTestStringConvertible {
    let a: [Int], b: [Int]
    var testDescription: String { "\(a) with \(b)" }

    static let all: [ShapePair] = [
        ShapePair(a: [3, 4], b: [4]),
        ShapePair(a: [4], b: [3, 4]),
        ShapePair(a: [2, 1, 4], b: [3, 1]),
        ShapePair(a: [4, 1], b: [1, 3]),
        ShapePair(a: [2, 3], b: [2, 3]),
        ShapePair(a: [2, 3], b: []),
        ShapePair(a: [], b: [2, 3]),
        ShapePair(a: [5], b: [1]),
        ShapePair(a: [1, 1], b: [3]),
        ShapePair(a: [2, 3, 1], b: [1, 1, 4]),
        ShapePair(a: [], b: []),
    ]
}

@Suite("Broadcasting arithmetic")
struct BroadcastingTests {
    /// Operands for `op`: divisors stay away from 0 so that a/b and its derivative are tame.
    private func operands(_ pair: ShapePair, for op: BinaryOperator, seed: UInt64) -> (DoubleTensor, DoubleTensor) {
        let a = randomValues(pair.a, in: -2...2, seed: seed)
        let b = op == .divide
            ? randomValuesAwayFromZero(pair.b, in: 0.5...2, seed: seed + 1)
            : randomValues(pair.b, in: -2...2, seed: seed + 1)
        return (a, b)
    }

    @Test(arguments: [
        ([3, 4], [4], [3, 4]),
        ([2, 1, 4], [3, 1], [2, 3, 4]),
        ([5], [1], [5]),
        ([], [2, 3], [2, 3]),
        ([1, 1], [3], [1, 3]),
        ([4, 1], [1, 3], [4, 3]),
    ])
    func broadcastShapeFollowsNumPyRules(a: [Int], b: [Int], expected: [Int]) {
        #expect(Tensor.broadcastShape(a, b) == expected)
        #expect(Tensor.broadcastShape(b, a) == expected)
    }

    @Test(arguments: BinaryOperator.allCases, ShapePair.all)
    func valuesMatchDoubleReference(op: BinaryOperator, pair: ShapePair) {
        let (a, b) = operands(pair, for: op, seed: 10)
        let result = op.apply(a.tensor, b.tensor)
        // One Float rounding of an exact operation: within half an ulp.
        expectClose(result, Reference.elementwise(a, b, op.reference), relative: 6e-8, absolute: 0)
    }

    @Test(arguments: BinaryOperator.allCases, ShapePair.all)
    func gradientsSumBackToEachOperandShape(op: BinaryOperator, pair: ShapePair) {
        let (a, b) = operands(pair, for: op, seed: 20)
        expectGradientsMatchFiniteDifferences(at: [a, b]) { op.apply($0[0], $0[1]) } reference: {
            Reference.elementwise($0[0], $0[1], op.reference)
        }
    }

    @Test func floatOperandsActAsScalars() {
        let x = Tensor([1, 2, 4])
        #expect((x + 1).scalars == [2, 3, 5])
        #expect((1 + x).scalars == [2, 3, 5])
        #expect((x - 1).scalars == [0, 1, 3])
        #expect((1 - x).scalars == [0, -1, -3])
        #expect((x * 2).scalars == [2, 4, 8])
        #expect((2 * x).scalars == [2, 4, 8])
        #expect((x / 2).scalars == [0.5, 1, 2])
        #expect((2 / x).scalars == [2, 1, 0.5])
        #expect((-x).scalars == [-1, -2, -4])
    }

    @Test func negationGradientIsMinusTheSeed() {
        let x = randomValues([2, 3], seed: 30)
        expectGradientsMatchFiniteDifferences(at: [x]) { -$0[0] } reference: { $0[0].map { -$0 } }
    }

    @Test(arguments: [
        ([2, 3, 4], [4]),
        ([2, 3, 4], [3, 1]),
        ([2, 3, 4], [2, 1, 4]),
        ([2, 3, 4], []),
        ([2, 3, 4], [1, 1, 1]),
        ([5, 2], [5, 1]),
    ])
    func summedToShapeAddsOverBroadcastAxes(from: [Int], to: [Int]) {
        let g = randomValues(from, seed: 40)
        // Reference: every element of g lands on the element of `to` it was broadcast from.
        var expected = DoubleTensor([Double](repeating: 0, count: to.reduce(1, *)), shape: to)
        for flat in 0..<g.count {
            let index = Layout.multiIndex(of: flat, in: from)
            let offset = from.count - to.count
            let target = to.indices.map { to[$0] == 1 ? 0 : index[$0 + offset] }
            expected[target] += g.values[flat]
        }
        expectClose(g.tensor.summed(toShape: to), expected, relative: 1e-6, absolute: 1e-6)
    }

    @Test func incompatibleShapesStopWithBothShapesInTheMessage() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([3, 4]) + Tensor.zeros([3])
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[3, 4]") && message.contains("[3]"), "message: \(message)")
    }
}
