import NormKitCore
import Testing

/// One Linear layer's shapes: x (rows, inFeatures), W (outFeatures, inFeatures).
struct LinearShape: Sendable, CustomTestStringConvertible {
    var rows: Int, inFeatures: Int, outFeatures: Int
    var testDescription: String { "rows \(rows), \(inFeatures) → \(outFeatures)" }
}

/// The three products against Double references, including every tail the
/// small kernels have (rows and outputs not multiples of 4, inputs not
/// multiples of 16 or 64) and the seed MLP's shapes; rows above
/// `smallLinearRowLimit` take `sgemm` and must agree too, and products above
/// `parallelLinearWork` are split over the threads.
@Suite("Linear kernels")
struct LinearKernelTests {
    static let shapes = [
        LinearShape(rows: 32, inFeatures: 784, outFeatures: 64), LinearShape(rows: 32, inFeatures: 64, outFeatures: 10),
        LinearShape(rows: 1, inFeatures: 1, outFeatures: 1), LinearShape(rows: 5, inFeatures: 37, outFeatures: 3),
        LinearShape(rows: 7, inFeatures: 80, outFeatures: 6), LinearShape(rows: 13, inFeatures: 143, outFeatures: 9),
        LinearShape(rows: smallLinearRowLimit + 3, inFeatures: 70, outFeatures: 5),
        // Above `parallelLinearWork`: split over the threads.
        LinearShape(rows: 37, inFeatures: 1_000, outFeatures: 131),
    ]

    /// |error| ≤ 2·√k·ε·Σ|a·b| + the final rounding: the bound a Float dot product of k terms meets.
    private func expectClose(_ actual: [Float], _ expected: [Double], magnitudes: [Double], depth: Int,
                             _ what: String, _ shape: LinearShape) {
        let bound = 2 * Double(depth).squareRoot() * Double(Float.ulpOfOne)
        var worst = 0.0
        for i in expected.indices {
            let excess = abs(Double(actual[i]) - expected[i]) - (bound * magnitudes[i] + Double(Float.ulpOfOne) * abs(expected[i]))
            worst = max(worst, excess)
        }
        #expect(worst <= 0, "\(what) for \(shape.testDescription): error exceeds the bound by \(worst)")
    }

    @Test("y = x·Wᵀ + b, dW = dyᵀ·x and dx = dy·W match Double references", arguments: shapes)
    func productsMatchReference(shape: LinearShape) {
        let (rows, inputs, outputs) = (shape.rows, shape.inFeatures, shape.outFeatures)
        let x = randomValues([rows, inputs], seed: 1).values.map { Float($0) }
        let w = randomValues([outputs, inputs], seed: 2).values.map { Float($0) }
        let b = randomValues([outputs], seed: 3).values.map { Float($0) }
        let dy = randomValues([rows, outputs], seed: 4).values.map { Float($0) }
        var y = [Float](repeating: .nan, count: rows * outputs)
        var dW = [Float](repeating: .nan, count: outputs * inputs)
        var dx = [Float](repeating: .nan, count: rows * inputs)
        x.withUnsafeBufferPointer { px in
            w.withUnsafeBufferPointer { pw in
                b.withUnsafeBufferPointer { pb in
                    dy.withUnsafeBufferPointer { pdy in
                        linearForward(input: px.baseAddress!, rows: rows, inFeatures: inputs, weight: pw.baseAddress!,
                                      outFeatures: outputs, bias: pb.baseAddress!, output: &y)
                        linearWeightGradient(outputGradient: pdy.baseAddress!, input: px.baseAddress!, rows: rows,
                                             inFeatures: inputs, outFeatures: outputs, weightGradient: &dW)
                        linearInputGradient(outputGradient: pdy.baseAddress!, weight: pw.baseAddress!, rows: rows,
                                            inFeatures: inputs, outFeatures: outputs, inputGradient: &dx)
                    }
                }
            }
        }
        var yReference = [Double](repeating: 0, count: y.count), yMagnitude = yReference
        for r in 0..<rows {
            for o in 0..<outputs {
                var total = Double(b[o]), magnitude = abs(Double(b[o]))
                for i in 0..<inputs {
                    total += Double(x[r * inputs + i]) * Double(w[o * inputs + i])
                    magnitude += abs(Double(x[r * inputs + i]) * Double(w[o * inputs + i]))
                }
                yReference[r * outputs + o] = total
                yMagnitude[r * outputs + o] = magnitude
            }
        }
        var dWReference = [Double](repeating: 0, count: dW.count), dWMagnitude = dWReference
        for o in 0..<outputs {
            for i in 0..<inputs {
                for r in 0..<rows {
                    let term = Double(dy[r * outputs + o]) * Double(x[r * inputs + i])
                    dWReference[o * inputs + i] += term
                    dWMagnitude[o * inputs + i] += abs(term)
                }
            }
        }
        var dxReference = [Double](repeating: 0, count: dx.count), dxMagnitude = dxReference
        for r in 0..<rows {
            for i in 0..<inputs {
                for o in 0..<outputs {
                    let term = Double(dy[r * outputs + o]) * Double(w[o * inputs + i])
                    dxReference[r * inputs + i] += term
                    dxMagnitude[r * inputs + i] += abs(term)
                }
            }
        }
        expectClose(y, yReference, magnitudes: yMagnitude, depth: inputs + 1, "y", shape)
        expectClose(dW, dWReference, magnitudes: dWMagnitude, depth: rows, "dW", shape)
        expectClose(dx, dxReference, magnitudes: dxMagnitude, depth: outputs, "dx", shape)
    }

    @Test("a product split over the threads gives the bits it gives on one thread",
          arguments: [LinearShape(rows: 37, inFeatures: 1_000, outFeatures: 131),
                      LinearShape(rows: 64, inFeatures: 513, outFeatures: 128)])
    func splitChangesNoBit(shape: LinearShape) {
        let (rows, inputs, outputs) = (shape.rows, shape.inFeatures, shape.outFeatures)
        #expect(rows * inputs * outputs >= parallelLinearWork)
        let x = randomValues([rows, inputs], seed: 8).values.map { Float($0) }
        let w = randomValues([outputs, inputs], seed: 9).values.map { Float($0) }
        let dy = randomValues([rows, outputs], seed: 10).values.map { Float($0) }
        func products(threads: Int) -> [[Float]] {
            let saved = Threading.count
            defer { Threading.count = saved }
            Threading.count = threads
            var y = [Float](repeating: .nan, count: rows * outputs)
            var dW = [Float](repeating: .nan, count: outputs * inputs)
            var dx = [Float](repeating: .nan, count: rows * inputs)
            linearForward(input: x, rows: rows, inFeatures: inputs, weight: w, outFeatures: outputs, bias: nil, output: &y)
            linearWeightGradient(outputGradient: dy, input: x, rows: rows, inFeatures: inputs, outFeatures: outputs,
                                 weightGradient: &dW)
            linearInputGradient(outputGradient: dy, weight: w, rows: rows, inFeatures: inputs, outFeatures: outputs,
                                inputGradient: &dx)
            return [y, dW, dx]
        }
        let serial = products(threads: 1), split = products(threads: 3)
        for (name, index) in [("y", 0), ("dW", 1), ("dx", 2)] {
            #expect(split[index].map(\.bitPattern) == serial[index].map(\.bitPattern), "\(name)")
        }
    }

    @Test("the small kernels write only their outputs (neighbouring memory is untouched)")
    func writesStayInBounds() {
        let (rows, inputs, outputs) = (5, 37, 3)
        let x = randomValues([rows, inputs], seed: 5).values.map { Float($0) }
        let w = randomValues([outputs, inputs], seed: 6).values.map { Float($0) }
        let dy = randomValues([rows, outputs], seed: 7).values.map { Float($0) }
        let guardSize = 64
        func guarded(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
            var buffer = [Float](repeating: -7, count: count + 2 * guardSize)
            buffer.withUnsafeMutableBufferPointer { body($0.baseAddress! + guardSize) }
            return Array(buffer.prefix(guardSize)) + Array(buffer.suffix(guardSize))
        }
        let untouched = [Float](repeating: -7, count: 2 * guardSize)
        #expect(guarded(rows * outputs) { linearForward(input: x, rows: rows, inFeatures: inputs, weight: w,
                                                         outFeatures: outputs, bias: nil, output: $0) } == untouched)
        #expect(guarded(outputs * inputs) { linearWeightGradient(outputGradient: dy, input: x, rows: rows, inFeatures: inputs,
                                                                  outFeatures: outputs, weightGradient: $0) } == untouched)
        #expect(guarded(rows * inputs) { linearInputGradient(outputGradient: dy, weight: w, rows: rows, inFeatures: inputs,
                                                              outFeatures: outputs, inputGradient: $0) } == untouched)
    }
}
