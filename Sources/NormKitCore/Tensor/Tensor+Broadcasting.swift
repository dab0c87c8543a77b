extension Tensor {
    /// The shape that `a` and `b` broadcast to (NumPy rules: align trailing
    /// axes; each pair of sizes must match or one must be 1).
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for axis in 0..<rank {
            let sizeA = axis < rank - a.count ? 1 : a[axis - (rank - a.count)]
            let sizeB = axis < rank - b.count ? 1 : b[axis - (rank - b.count)]
            precondition(sizeA == sizeB || sizeA == 1 || sizeB == 1,
                         "shapes \(a) and \(b) cannot be broadcast together (axis \(axis): \(sizeA) vs \(sizeB))")
            result[axis] = sizeA == 1 ? sizeB : sizeA
        }
        return result
    }

    /// Strides that read `shape` as if it had `targetShape` (0 on broadcast axes).
    static func broadcastStrides(of shape: [Int], to targetShape: [Int]) -> [Int] {
        var strides = [Int](repeating: 0, count: targetShape.count)
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            let targetAxis = axis + targetShape.count - shape.count
            strides[targetAxis] = shape[axis] == 1 ? 0 : step
            step *= shape[axis]
        }
        return strides
    }

    /// Elementwise `combine(a, b)` with broadcasting. Fast paths for equal
    /// shapes and for a scalar operand; otherwise the innermost axis is the
    /// inner loop and the outer axes are walked with an odometer.
    @inline(__always)
    static func broadcastCombine(_ a: Tensor, _ b: Tensor, _ combine: (Float, Float) -> Float) -> Tensor {
        if a.shape == b.shape {
            return Tensor(shape: a.shape) { out in
                a.withUnsafeBufferPointer { x in
                    b.withUnsafeBufferPointer { y in
                        for i in 0..<out.count { out[i] = combine(x[i], y[i]) }
                    }
                }
            }
        }
        let shape = broadcastShape(a.shape, b.shape)
        if b.scalarCount == 1 && a.scalarCount == shape.reduce(1, *) {
            let y = b.storage.base[0]
            return Tensor(shape: shape) { out in
                a.withUnsafeBufferPointer { x in for i in 0..<out.count { out[i] = combine(x[i], y) } }
            }
        }
        if a.scalarCount == 1 && b.scalarCount == shape.reduce(1, *) {
            let x = a.storage.base[0]
            return Tensor(shape: shape) { out in
                b.withUnsafeBufferPointer { y in for i in 0..<out.count { out[i] = combine(x, y[i]) } }
            }
        }
        let stridesA = broadcastStrides(of: a.shape, to: shape)
        let stridesB = broadcastStrides(of: b.shape, to: shape)
        return Tensor(shape: shape) { out in
            guard out.count > 0 else { return }
            let inner = shape.last ?? 1
            let innerStrideA = stridesA.last ?? 0, innerStrideB = stridesB.last ?? 0
            let outerRank = max(shape.count - 1, 0)
            var index = [Int](repeating: 0, count: outerRank)
            var offsetA = 0, offsetB = 0, offsetOut = 0
            let pa = a.storage.base, pb = b.storage.base
            while offsetOut < out.count {
                for j in 0..<inner {
                    out[offsetOut + j] = combine(pa[offsetA + j * innerStrideA], pb[offsetB + j * innerStrideB])
                }
                offsetOut += inner
                // Advance the odometer over the outer axes.
                var axis = outerRank - 1
                while axis >= 0 {
                    index[axis] += 1
                    offsetA += stridesA[axis]
                    offsetB += stridesB[axis]
                    if index[axis] < shape[axis] { break }
                    offsetA -= stridesA[axis] * shape[axis]
                    offsetB -= stridesB[axis] * shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }

    /// Sums a broadcast gradient back down to `targetShape` (the pullback of
    /// broadcasting, and the core of every axis reduction). Accumulates in
    /// Double, so long sums do not drift; records no graph node.
    public func summed(toShape targetShape: [Int]) -> Tensor {
        if shape == targetShape { return self }
        precondition(Tensor.broadcastShape(targetShape, shape) == shape,
                     "cannot sum shape \(shape) down to \(targetShape)")
        let strides = Tensor.broadcastStrides(of: targetShape, to: shape)
        var accumulators = [Double](repeating: 0, count: targetShape.reduce(1, *))
        withUnsafeBufferPointer { src in
            let inner = shape.last ?? 1
            let innerStride = strides.last ?? 0
            let outerRank = max(shape.count - 1, 0)
            var index = [Int](repeating: 0, count: outerRank)
            var offsetOut = 0, offsetSrc = 0
            while offsetSrc < src.count {
                for j in 0..<inner { accumulators[offsetOut + j * innerStride] += Double(src[offsetSrc + j]) }
                offsetSrc += inner
                var axis = outerRank - 1
                while axis >= 0 {
                    index[axis] += 1
                    offsetOut += strides[axis]
                    if index[axis] < shape[axis] { break }
                    offsetOut -= strides[axis] * shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
        return Tensor(accumulators.map { Float($0) }, shape: targetShape)
    }

    /// `self` after `body` has written into its (unique) storage.
    @inline(__always)
    func withUnsafeAccumulation(_ body: (UnsafeMutableBufferPointer<Float>) -> Void) -> Tensor {
        var result = self
        result.withUnsafeMutableBufferPointer(body)
        return result
    }

    /// `transform` applied to every element (no graph recording).
    @inline(__always)
    func mapScalars(_ transform: (Float) -> Float) -> Tensor {
        Tensor(shape: shape) { out in
            withUnsafeBufferPointer { x in for i in 0..<out.count { out[i] = transform(x[i]) } }
        }
    }
}
