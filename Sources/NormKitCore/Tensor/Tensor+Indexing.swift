extension Tensor {
    /// The rows `indices` of the first axis, in that order (a shuffled batch).
    public func gatheringRows<Indices: Collection<Int>>(_ indices: Indices) -> Tensor {
        precondition(rank >= 1, "gatheringRows needs rank ≥ 1, shape is \(shape)")
        let rowSize = shape.dropFirst().reduce(1, *)
        var outShape = shape
        outShape[0] = indices.count
        let rows = Array(indices)
        let inputShape = shape
        var result = Tensor(shape: outShape) { out in
            for (position, row) in rows.enumerated() {
                precondition(row >= 0 && row < inputShape[0], "row \(row) is outside shape \(inputShape)")
                (out.baseAddress! + position * rowSize).update(from: storage.base + row * rowSize, count: rowSize)
            }
        }
        result.record("gatherRows", inputs: [self]) { g in
            [Tensor.zeros(inputShape).withUnsafeAccumulation { dst in
                g.withUnsafeBufferPointer { src in
                    for (position, row) in rows.enumerated() {
                        for j in 0..<rowSize { dst[row * rowSize + j] += src[position * rowSize + j] }
                    }
                }
            }]
        }
        return result
    }
}
