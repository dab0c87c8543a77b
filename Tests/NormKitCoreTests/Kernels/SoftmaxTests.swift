import Foundation
import NormKitCore
import Testing

/// Softmax (or log-softmax) over the last axis, in Double, shifted by the row maximum.
private func referenceSoftmax(_ x: DoubleTensor, logarithm: Bool) -> DoubleTensor {
    let classes = x.shape.last!
    var result = x
    for start in stride(from: 0, to: x.count, by: classes) {
        let row = x.values[start..<(start + classes)]
        let maximum = row.max()!
        let logTotal = Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - maximum) })
        for j in 0..<classes {
            let logProbability = row[start + j] - maximum - logTotal
            result.values[start + j] = logarithm ? logProbability : Foundation.exp(logProbability)
        }
    }
    return result
}

@Suite("softmax and logSoftmax")
struct SoftmaxTests {
    @Test(arguments: [[1, 7], [4, 10], [2, 3, 5]])
    func softmaxRowsAreProbabilitiesMatchingDoubleReference(shape: [Int]) {
        let x = randomValues(shape, in: -5...5, seed: 110)
        let y = x.tensor.softmax()
        expectClose(y, referenceSoftmax(x, logarithm: false), relative: 1e-6, absolute: 1e-8)
        let classes = shape.last!
        let rowSums = DoubleTensor(y).values.chunked(classes).map { $0.reduce(0, +) }
        expectClose(rowSums.map { Float($0) }, [Double](repeating: 1, count: rowSums.count), relative: 0, absolute: 1e-6,
                    "row sums")
    }

    @Test(arguments: [[1, 7], [4, 10], [2, 3, 5]])
    func logSoftmaxMatchesDoubleReference(shape: [Int]) {
        let x = randomValues(shape, in: -5...5, seed: 111)
        expectClose(x.tensor.logSoftmax(), referenceSoftmax(x, logarithm: true), relative: 1e-6, absolute: 1e-6)
    }

    @Test(arguments: [[Float(1000), 1001, 1002], [-1000, -1001, -1002], [-1e30, 0, 1e30], [88, 89, 90, -200]])
    func extremeLogitsGiveFiniteProbabilities(logits: [Float]) {
        let x = Tensor(logits, shape: [1, logits.count])
        let reference = DoubleTensor(x)
        let probabilities = x.softmax(), logProbabilities = x.logSoftmax()
        #expect(probabilities.scalars.allSatisfy { $0.isFinite }, "\(probabilities)")
        #expect(logProbabilities.scalars.allSatisfy { $0.isFinite }, "\(logProbabilities)")
        expectClose(probabilities, referenceSoftmax(reference, logarithm: false), relative: 1e-6, absolute: 1e-30)
        expectClose(logProbabilities, referenceSoftmax(reference, logarithm: true), relative: 1e-6, absolute: 1e-6)
    }

    @Test func softmaxIgnoresAConstantShiftOfTheRow() {
        let x = randomValues([2, 6], in: -3...3, seed: 112).tensor
        expectClose((x + 1000).softmax().scalars, DoubleTensor(x.softmax()).values, relative: 1e-3, absolute: 1e-6)
    }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(logarithm: Bool) {
        let x = randomValues([3, 5], in: -3...3, seed: 113)
        expectGradientsMatchFiniteDifferences(at: [x], forwardRelative: 1e-6) {
            logarithm ? $0[0].logSoftmax() : $0[0].softmax()
        } reference: {
            referenceSoftmax($0[0], logarithm: logarithm)
        }
    }

    @Test func gradientsOfShiftedLargeLogitsAreFinite() {
        let node = GradientNode(leaf: "logits")
        let x = Tensor([1000, 1001, 1002, -1000, -1001, -1002], shape: [2, 3]).attached(to: node)
        x.logSoftmax().backward(gradient: Tensor([1, 0, 0, 0, 0, 1], shape: [2, 3]))
        let gradient = node.gradient?.scalars ?? []
        #expect(gradient.count == 6 && gradient.allSatisfy { $0.isFinite }, "\(gradient)")
        // d/dx log softmax(x)[i] = e_i − softmax(x); each row sums to 0.
        expectClose([gradient[0] + gradient[1] + gradient[2], gradient[3] + gradient[4] + gradient[5]], [0, 0],
                    relative: 0, absolute: 1e-6)
    }

    @Test(arguments: [false, true])
    func rawKernelPairMatchesDoubleReference(logarithm: Bool) {
        let x = randomValues([3, 4], in: -4...4, seed: 114), g = randomValues([3, 4], seed: 115)
        let reference = referenceSoftmax(x, logarithm: logarithm)
        let input = x.values.map { Float($0) }, outputGradient = g.values.map { Float($0) }
        var output = [Float](repeating: .nan, count: 12), inputGradient = [Float](repeating: .nan, count: 12)
        input.withUnsafeBufferPointer { xp in
            output.withUnsafeMutableBufferPointer { yp in
                softmaxForward(xp, rows: 3, classes: 4, logarithm: logarithm, output: yp)
            }
        }
        output.withUnsafeBufferPointer { yp in
            outputGradient.withUnsafeBufferPointer { gp in
                inputGradient.withUnsafeMutableBufferPointer { dp in
                    softmaxBackward(output: yp, outputGradient: gp, rows: 3, classes: 4, logarithm: logarithm, inputGradient: dp)
                }
            }
        }
        expectClose(output, reference.values, relative: 1e-6, absolute: 1e-7, "forward")
        // Analytic pullback in Double: softmax dx = y ⊙ (g − Σ g·y); log-softmax dx = g − softmax · Σ g.
        var expected = [Double](repeating: 0, count: 12)
        for row in 0..<3 {
            let r = (row * 4)..<(row * 4 + 4)
            let probabilities = r.map { logarithm ? Foundation.exp(reference.values[$0]) : reference.values[$0] }
            let dot = zip(r, probabilities).reduce(0.0) { $0 + g.values[$1.0] * $1.1 }
            let total = r.reduce(0.0) { $0 + g.values[$1] }
            for (j, p) in zip(r, probabilities) {
                expected[j] = logarithm ? g.values[j] - p * total : p * (g.values[j] - dot)
            }
        }
        expectClose(inputGradient, expected, relative: 1e-5, absolute: 1e-6, "backward")
    }
}

private extension Array {
    /// Consecutive runs of `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
