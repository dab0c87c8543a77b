import NormKitCore
import Testing

/// y = x · Wᵀ + b in Double.
private func referenceLinear(_ x: DoubleTensor, _ weight: DoubleTensor, _ bias: DoubleTensor?) -> DoubleTensor {
    let product = Reference.matmul(x, Reference.transposed(weight))
    guard let bias else { return product }
    return Reference.elementwise(product, bias, +)
}

@Suite("matmul and linear")
struct LinearAlgebraTests {
    @Test(arguments: [(1, 1, 1), (3, 4, 5), (7, 33, 5), (2, 1, 9), (6, 32, 32), (13, 70, 3)])
    func matmulMatchesDoubleReference(m: Int, k: Int, n: Int) {
        let a = randomValues([m, k], seed: 80), b = randomValues([k, n], seed: 81)
        let product = a.tensor.matmul(b.tensor)
        // Products of values in [-1, 1]: the error is a few ulps of √k.
        expectClose(product, Reference.matmul(a, b), relative: 1e-5, absolute: 1e-6 * Double(k).squareRoot())
    }

    @Test(arguments: [(1, 1, 1), (3, 4, 5), (7, 33, 5)])
    func matmulGradientsMatchFiniteDifferences(m: Int, k: Int, n: Int) {
        let a = randomValues([m, k], seed: 82), b = randomValues([k, n], seed: 83)
        expectGradientsMatchFiniteDifferences(at: [a, b], forwardAbsolute: 1e-6) { $0[0].matmul($0[1]) } reference: {
            Reference.matmul($0[0], $0[1])
        }
    }

    @Test func matmulWithMismatchedInnerSizesStopsWithBothShapes() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([2, 3]).matmul(Tensor.zeros([4, 5]))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[2, 3]") && message.contains("[4, 5]"), "message: \(message)")
    }

    @Test(arguments: [true, false])
    func linearMatchesDoubleReference(withBias: Bool) {
        let x = randomValues([5, 7], seed: 84), w = randomValues([3, 7], seed: 85)
        let b = withBias ? randomValues([3], seed: 86) : nil
        let y = linear(x.tensor, weight: w.tensor, bias: b?.tensor)
        expectClose(y, referenceLinear(x, w, b), relative: 1e-5, absolute: 1e-6)
    }

    @Test(arguments: [true, false])
    func linearGradientsForInputWeightAndBiasMatchFiniteDifferences(withBias: Bool) {
        let x = randomValues([4, 6], seed: 87), w = randomValues([3, 6], seed: 88), b = randomValues([3], seed: 89)
        let inputs = withBias ? [x, w, b] : [x, w]
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            linear(t[0], weight: t[1], bias: withBias ? t[2] : nil)
        } reference: { d in
            referenceLinear(d[0], d[1], withBias ? d[2] : nil)
        }
    }

    @Test func linearOnAConstantInputStillGivesTheWeightGradient() {
        // The input is data, not a parameter: only W and b are leaves.
        let x = randomValues([4, 3], seed: 90), w = randomValues([2, 3], seed: 91), b = randomValues([2], seed: 92)
        expectGradientsMatchFiniteDifferences(at: [w, b]) { t in
            linear(x.tensor, weight: t[0], bias: t[1])
        } reference: { d in
            referenceLinear(x, d[0], d[1])
        }
    }

    @Test func linearWithMismatchedFeaturesStopsWithBothShapes() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = linear(Tensor.zeros([2, 3]), weight: Tensor.zeros([4, 5]), bias: nil)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[2, 3]") && message.contains("[4, 5]"), "message: \(message)")
    }
}
