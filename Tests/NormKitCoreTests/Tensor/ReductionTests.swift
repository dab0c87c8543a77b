import NormKitCore
import Testing

/// Axes to reduce a (2, 3, 4) tensor over.
struct AxesCase: Sendable, CustomTestStringConvertible {
    let axes: [Int], keepingDimensions: Bool
    var testDescription: String { "\(axes)\(keepingDimensions ? " keeping dimensions" : "")" }

    static let all: [AxesCase] = [[0], [1], [2], [-1], [0, 2], [-3, -1], [1, -1], [0, 1, 2], [2, 0], []]
        .flatMap { axes in [AxesCase(axes: axes, keepingDimensions: false), AxesCase(axes: axes, keepingDimensions: true)] }
}

@Suite("Reductions")
struct ReductionTests {
    private let shape = [2, 3, 4]

    @Test func sumAndMeanOfAllElementsMatchDoubleReference() {
        let x = randomValues([3, 7, 5], seed: 70)
        let total = x.values.reduce(0, +)
        let sum = x.tensor.sum()
        #expect(sum.shape == [])
        expectClose([sum.scalar], [total], relative: 1e-6, absolute: 1e-6)
        let mean = x.tensor.mean()
        #expect(mean.shape == [])
        expectClose([mean.scalar], [total / Double(x.count)], relative: 1e-6, absolute: 1e-7)
    }

    @Test func sumAccumulatesInDoubleSoLongSumsDoNotDrift() {
        // A Float running sum of 10⁶ × 0.1 ends near 100958; the true sum of the Float 0.1s is 100000.0015.
        let x = Tensor(repeating: 0.1, shape: [1_000_000])
        let exact = Double(Float(0.1)) * 1_000_000
        expectClose([x.sum().scalar], [exact], relative: 1e-7, absolute: 0)
        expectClose(x.reshaped([1000, 1000]).sum(alongAxes: [1]).scalars,
                    [Double](repeating: Double(Float(0.1)) * 1000, count: 1000), relative: 1e-7, absolute: 0)
    }

    @Test func sumAndMeanGradientsMatchFiniteDifferences() {
        let x = randomValues([2, 5], seed: 71)
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].sum() } reference: {
            DoubleTensor([$0[0].values.reduce(0, +)], shape: [])
        }
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].mean() } reference: {
            DoubleTensor([$0[0].values.reduce(0, +) / 10], shape: [])
        }
    }

    @Test(arguments: AxesCase.all)
    func sumAlongAxesMatchesDoubleReference(axesCase: AxesCase) {
        let x = randomValues(shape, seed: 72)
        let result = x.tensor.sum(alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
        let expected = Reference.sum(x, alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
        expectClose(result, expected, relative: 1e-6, absolute: 1e-7)
    }

    @Test(arguments: AxesCase.all)
    func sumAlongAxesGradientBroadcastsTheSeedBack(axesCase: AxesCase) {
        let x = randomValues(shape, seed: 73)
        expectGradientsMatchFiniteDifferences(at: [x]) {
            $0[0].sum(alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
        } reference: {
            Reference.sum($0[0], alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
        }
    }

    @Test(arguments: AxesCase.all)
    func meanAlongAxesDividesBySizeOfReducedAxes(axesCase: AxesCase) {
        let x = randomValues(shape, seed: 74)
        let reducedCount = Set(axesCase.axes.map { $0 < 0 ? $0 + 3 : $0 }).reduce(1) { $0 * shape[$1] }
        func reference(_ inputs: [DoubleTensor]) -> DoubleTensor {
            Reference.sum(inputs[0], alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
                .map { $0 / Double(reducedCount) }
        }
        expectGradientsMatchFiniteDifferences(at: [x]) {
            $0[0].mean(alongAxes: axesCase.axes, keepingDimensions: axesCase.keepingDimensions)
        } reference: { reference($0) }
    }

    @Test func argmaxAlongTheLastAxisFindsTheLargestPerRow() {
        let x = Tensor([0.1, 0.9, 0.3,
                        -5, -6, -4,
                        2, 2, 1], shape: [3, 3])
        #expect(x.argmax() == [1, 2, 0])
        #expect(x.argmax(axis: 1) == [1, 2, 0])
    }

    @Test func argmaxTakesTheFirstOfTiedMaxima() {
        #expect(Tensor([3, 7, 7, 1, 7]).argmax() == [1])
        #expect(Tensor([4, 4, 4]).argmax() == [0])
        #expect(Tensor(repeating: 0, shape: [2, 3]).argmax(axis: 0) == [0, 0, 0])
    }

    @Test func argmaxAlongALeadingAxisMatchesReference() {
        let x = randomValues([3, 4, 2], seed: 75)
        let result = x.tensor.argmax(axis: 1)
        var expected: [Int] = []
        for o in 0..<3 {
            for i in 0..<2 {
                let column = (0..<4).map { x[[o, $0, i]] }
                expected.append(column.firstIndex(of: column.max()!)!)
            }
        }
        #expect(result == expected)
        #expect(x.tensor.argmax(axis: -2) == expected)
    }
}
