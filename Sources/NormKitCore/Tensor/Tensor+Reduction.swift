extension Tensor {
    /// The sum of all elements, as a scalar tensor (accumulated in Double).
    public func sum() -> Tensor {
        let total = withUnsafeBufferPointer { x in x.reduce(0.0) { $0 + Double($1) } }
        var result = Tensor(scalar: Float(total))
        let inputShape = shape
        result.record("sum", inputs: [self]) { g in [Tensor(repeating: g.scalar, shape: inputShape)] }
        return result
    }

    /// The mean of all elements, as a scalar tensor.
    public func mean() -> Tensor {
        precondition(scalarCount > 0, "mean of an empty tensor (shape \(shape))")
        return sum() / Float(scalarCount)
    }

    /// Sums over `axes`; the reduced axes are kept with size 1 when
    /// `keepingDimensions`, removed otherwise. Accumulates in Double.
    public func sum(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
        let normalized = Set(axes.map { normalizeAxis($0) })
        var keptShape = shape
        for axis in normalized { keptShape[axis] = 1 }
        let outShape = keepingDimensions ? keptShape : shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
        var result = detached().summed(toShape: keptShape)
        result._shape = outShape
        let inputShape = shape
        result.record("sumAlongAxes", inputs: [self]) { g in
            [Tensor.broadcastCombine(Tensor.zeros(inputShape), g.reshaped(keptShape), +)]
        }
        return result
    }

    /// Means over `axes` (see `sum(alongAxes:keepingDimensions:)`).
    public func mean(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
        let count = Set(axes.map { normalizeAxis($0) }).reduce(1) { $0 * shape[$1] }
        precondition(count > 0, "mean over empty axes \(axes) of shape \(shape)")
        return sum(alongAxes: axes, keepingDimensions: keepingDimensions) / Float(count)
    }

    /// The index of the largest value along `axis` for every other position
    /// (the first one on ties). Not differentiable.
    public func argmax(axis: Int = -1) -> [Int] {
        let axis = normalizeAxis(axis)
        let outer = shape[..<axis].reduce(1, *), size = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        precondition(size > 0, "argmax over an empty axis of shape \(shape)")
        var result = [Int](repeating: 0, count: outer * inner)
        withUnsafeBufferPointer { x in
            for o in 0..<outer {
                for i in 0..<inner {
                    var best = 0
                    var bestValue = x[o * size * inner + i]
                    for s in 1..<max(size, 1) where x[(o * size + s) * inner + i] > bestValue {
                        best = s
                        bestValue = x[(o * size + s) * inner + i]
                    }
                    result[o * inner + i] = best
                }
            }
        }
        return result
    }

    func normalizeAxis(_ axis: Int) -> Int {
        let normalized = axis < 0 ? axis + rank : axis
        precondition(normalized >= 0 && normalized < rank, "axis \(axis) is out of range for shape \(shape)")
        return normalized
    }
}
