// Elementwise arithmetic with NumPy broadcasting. Each operator records one
// autodiff node whose pullback sums the gradient back to each operand's shape.

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        var result = broadcastCombine(a, b, +)
        let shapeA = a.shape, shapeB = b.shape
        result.record("add", inputs: [a, b]) { g in [g.summed(toShape: shapeA), g.summed(toShape: shapeB)] }
        return result
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        var result = broadcastCombine(a, b, -)
        let shapeA = a.shape, shapeB = b.shape
        result.record("subtract", inputs: [a, b]) { g in
            [g.summed(toShape: shapeA), g.mapScalars { -$0 }.summed(toShape: shapeB)]
        }
        return result
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        var result = broadcastCombine(a, b, *)
        result.record("multiply", inputs: [a, b]) { g in
            [broadcastCombine(g, b, *).summed(toShape: a.shape), broadcastCombine(g, a, *).summed(toShape: b.shape)]
        }
        return result
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        var result = broadcastCombine(a, b, /)
        result.record("divide", inputs: [a, b]) { g in
            let gradientA = broadcastCombine(g, b, /).summed(toShape: a.shape)
            // d(a/b)/db = −a/b²
            let quotient = broadcastCombine(a, b, /)
            let gradientB = broadcastCombine(broadcastCombine(g, quotient, *), b, { -$0 / $1 }).summed(toShape: b.shape)
            return [gradientA, gradientB]
        }
        return result
    }

    public static prefix func - (a: Tensor) -> Tensor {
        var result = a.mapScalars { -$0 }
        result.record("negate", inputs: [a]) { g in [g.mapScalars { -$0 }] }
        return result
    }

    public static func + (a: Tensor, b: Float) -> Tensor { a + Tensor(scalar: b) }
    public static func + (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) + b }
    public static func - (a: Tensor, b: Float) -> Tensor { a - Tensor(scalar: b) }
    public static func - (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) - b }
    public static func * (a: Tensor, b: Float) -> Tensor { a * Tensor(scalar: b) }
    public static func * (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) * b }
    public static func / (a: Tensor, b: Float) -> Tensor { a / Tensor(scalar: b) }
    public static func / (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) / b }
}

// MARK: - Unary functions

extension Tensor {
    /// eˣ elementwise.
    public func exp() -> Tensor {
        var result = mapScalars { _exp($0) }
        let output = result.detached()
        result.record("exp", inputs: [self]) { g in [Tensor.broadcastCombine(g, output, *)] }
        return result
    }

    /// Natural logarithm elementwise.
    public func log() -> Tensor {
        var result = mapScalars { _log($0) }
        let input = detached()
        result.record("log", inputs: [self]) { g in [Tensor.broadcastCombine(g, input, /)] }
        return result
    }

    /// √x elementwise.
    public func squareRoot() -> Tensor {
        var result = mapScalars { $0.squareRoot() }
        let output = result.detached()
        result.record("squareRoot", inputs: [self]) { g in [Tensor.broadcastCombine(g, output, { $0 * 0.5 / $1 })] }
        return result
    }

    /// x² elementwise.
    public func squared() -> Tensor {
        var result = mapScalars { $0 * $0 }
        let input = detached()
        result.record("squared", inputs: [self]) { g in [Tensor.broadcastCombine(g, input, { 2 * $0 * $1 })] }
        return result
    }
}

/// max(x, 0) elementwise. The gradient at exactly 0 is taken as 0, as in PyTorch.
public func relu(_ x: Tensor) -> Tensor {
    var result = x.mapScalars { max($0, 0) }
    let input = x.detached()
    result.record("relu", inputs: [x]) { g in [Tensor.broadcastCombine(g, input, { $1 > 0 ? $0 : 0 })] }
    return result
}

/// 1 / (1 + e⁻ˣ) elementwise, computed so that it never overflows.
public func sigmoid(_ x: Tensor) -> Tensor {
    var result = x.mapScalars { value in
        if value >= 0 { return 1 / (1 + _exp(-value)) }
        let e = _exp(value)
        return e / (1 + e)
    }
    let output = result.detached()
    result.record("sigmoid", inputs: [x]) { g in [Tensor.broadcastCombine(g, output, { $0 * $1 * (1 - $1) })] }
    return result
}

/// Hyperbolic tangent elementwise.
public func tanh(_ x: Tensor) -> Tensor {
    var result = x.mapScalars { _tanh($0) }
    let output = result.detached()
    result.record("tanh", inputs: [x]) { g in [Tensor.broadcastCombine(g, output, { $0 * (1 - $1 * $1) })] }
    return result
}
