/// Softmax over each row of a (rows, classes) buffer, numerically stable:
/// the row maximum is subtracted before exponentiating, so no value overflows.
/// When `logarithm` is true the row of log-probabilities is written instead,
/// computed as (x − max) − log Σ e^(x − max) rather than log(softmax), which
/// keeps tiny probabilities finite.
@inlinable
public func softmaxForward(_ input: UnsafeBufferPointer<Float>, rows: Int, classes: Int,
                           logarithm: Bool, output: UnsafeMutableBufferPointer<Float>) {
    precondition(input.count == rows * classes && output.count == rows * classes,
                 "softmax buffers hold \(input.count) and \(output.count) values, expected \(rows)×\(classes)")
    for row in 0..<rows {
        let x = input.baseAddress! + row * classes, y = output.baseAddress! + row * classes
        var maximum = -Float.infinity
        for j in 0..<classes { maximum = max(maximum, x[j]) }
        var total: Float = 0
        for j in 0..<classes {
            let e = _exp(x[j] - maximum)
            y[j] = e
            total += e
        }
        if logarithm {
            let logTotal = _log(total)
            for j in 0..<classes { y[j] = x[j] - maximum - logTotal }
        } else {
            let inverse = 1 / total
            for j in 0..<classes { y[j] *= inverse }
        }
    }
}

/// The pullback of `softmaxForward` given its output `y` and the output
/// gradient `g`: for softmax dx = y ⊙ (g − Σ g·y); for log-softmax
/// dx = g − eʸ · Σ g.
@inlinable
public func softmaxBackward(output y: UnsafeBufferPointer<Float>, outputGradient g: UnsafeBufferPointer<Float>,
                            rows: Int, classes: Int, logarithm: Bool,
                            inputGradient dx: UnsafeMutableBufferPointer<Float>) {
    for row in 0..<rows {
        let base = row * classes
        if logarithm {
            var total: Float = 0
            for j in 0..<classes { total += g[base + j] }
            for j in 0..<classes { dx[base + j] = g[base + j] - _exp(y[base + j]) * total }
        } else {
            var dot: Float = 0
            for j in 0..<classes { dot += g[base + j] * y[base + j] }
            for j in 0..<classes { dx[base + j] = y[base + j] * (g[base + j] - dot) }
        }
    }
}

extension Tensor {
    /// Softmax over the last axis.
    public func softmax() -> Tensor { softmaxOverLastAxis(logarithm: false) }

    /// Log-softmax over the last axis.
    public func logSoftmax() -> Tensor { softmaxOverLastAxis(logarithm: true) }

    private func softmaxOverLastAxis(logarithm: Bool) -> Tensor {
        precondition(rank >= 1, "softmax needs rank ≥ 1, shape is \(shape)")
        let classes = shape[rank - 1], rows = scalarCount / max(classes, 1)
        var result = Tensor(shape: shape) { out in
            withUnsafeBufferPointer { x in softmaxForward(x, rows: rows, classes: classes, logarithm: logarithm, output: out) }
        }
        let output = result.detached()
        result.record(logarithm ? "logSoftmax" : "softmax", inputs: [self]) { g in
            [Tensor(shape: output.shape) { dx in
                output.withUnsafeBufferPointer { y in
                    g.withUnsafeBufferPointer { gp in
                        softmaxBackward(output: y, outputGradient: gp, rows: rows, classes: classes,
                                        logarithm: logarithm, inputGradient: dx)
                    }
                }
            }]
        }
        return result
    }
}
