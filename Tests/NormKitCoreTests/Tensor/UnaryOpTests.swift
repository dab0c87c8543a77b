import Foundation
import NormKitCore
import Testing

/// The elementwise unary ops, their Double meaning and a domain where the
/// Double reference is smooth (no kink within a finite-difference step).
enum UnaryOp: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case exp, log, squareRoot, squared, relu, sigmoid, tanh

    func apply(_ x: Tensor) -> Tensor {
        switch self {
        case .exp: x.exp()
        case .log: x.log()
        case .squareRoot: x.squareRoot()
        case .squared: x.squared()
        case .relu: NormKitCore.relu(x)
        case .sigmoid: NormKitCore.sigmoid(x)
        case .tanh: NormKitCore.tanh(x)
        }
    }

    func reference(_ x: Double) -> Double {
        switch self {
        case .exp: Foundation.exp(x)
        case .log: Foundation.log(x)
        case .squareRoot: x.squareRoot()
        case .squared: x * x
        case .relu: max(x, 0)
        case .sigmoid: 1 / (1 + Foundation.exp(-x))
        case .tanh: Foundation.tanh(x)
        }
    }

    func inputs(seed: UInt64) -> DoubleTensor {
        switch self {
        case .log, .squareRoot: randomValues([3, 5], in: 0.2...4, seed: seed)
        case .relu: randomValuesAwayFromZero([3, 5], in: 0.05...3, seed: seed)
        default: randomValues([3, 5], in: -3...3, seed: seed)
        }
    }

    var testDescription: String { rawValue }
}

@Suite("Unary elementwise ops")
struct UnaryOpTests {
    @Test(arguments: UnaryOp.allCases)
    func valuesMatchDoubleReference(op: UnaryOp) {
        let x = op.inputs(seed: 50)
        // libm's Float functions are faithful to a few ulps.
        expectClose(op.apply(x.tensor), x.map(op.reference), relative: 4e-7, absolute: 1e-30)
    }

    @Test(arguments: UnaryOp.allCases)
    func gradientsMatchFiniteDifferences(op: UnaryOp) {
        let x = op.inputs(seed: 60)
        expectGradientsMatchFiniteDifferences(at: [x], forwardRelative: 4e-7) { op.apply($0[0]) } reference: {
            $0[0].map(op.reference)
        }
    }

    @Test func sigmoidSaturatesWithoutNaNForLargeMagnitudes() {
        let values: [Float] = [-1e30, -1000, -104, -89, -88, -50, 0, 50, 88, 89, 1000, 1e30]
        let node = GradientNode(leaf: "x")
        let x = Tensor(values).attached(to: node)
        let y = sigmoid(x)
        #expect(y.scalars.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 }, "\(y.scalars)")
        expectClose(y.scalars, values.map { 1 / (1 + Foundation.exp(-Double($0))) }, relative: 4e-7, absolute: 1e-37)
        #expect(y.scalars.first == 0 && y.scalars.last == 1)
        y.backward(gradient: Tensor.ones([values.count]))
        let gradient = node.gradient?.scalars ?? []
        #expect(gradient.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 0.25 }, "\(gradient)")
        #expect(gradient[6] == 0.25, "σ'(0) = 1/4 exactly")
    }

    @Test func tanhSaturatesAtPlusMinusOne() {
        let y = tanh(Tensor([-1000, -20, 20, 1000]))
        #expect(y.scalars == [-1, -1, 1, 1])
    }

    @Test func reluGradientAtZeroIsZero() {
        let node = GradientNode(leaf: "x")
        let y = relu(Tensor([-1, 0, 2]).attached(to: node))
        #expect(y.scalars == [0, 0, 2])
        y.backward(gradient: Tensor([1, 1, 1]))
        #expect(node.gradient?.scalars == [0, 0, 1])
    }

    @Test func unaryOpsKeepTheShape() {
        let x = Tensor.ones([2, 1, 3])
        for op in UnaryOp.allCases { #expect(op.apply(x).shape == [2, 1, 3], "\(op)") }
    }
}
