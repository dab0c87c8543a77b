/// An n-dimensional array of Float32 values, contiguous and row-major, with
/// value semantics: copies share storage until one of them is mutated.
///
/// A tensor may carry a link into the autodiff graph (`gradientNode`): every
/// differentiable operation on such a tensor records one node, and
/// `backward()` on a scalar result sends gradients to the `Parameter`s it
/// depends on. Mutating a tensor in place detaches it from the graph.
public struct Tensor: CustomStringConvertible {
    @usableFromInline var _shape: [Int]
    @usableFromInline var storage: TensorStorage
    @usableFromInline var _gradientNode: GradientNode?

    /// The size of each dimension; `[]` for a scalar.
    public var shape: [Int] { _shape }
    /// The autodiff node that produced this value, if gradients flow through it.
    public var gradientNode: GradientNode? {
        get { _gradientNode }
        set { _gradientNode = newValue }
    }

    // MARK: Creation

    /// A tensor of `shape` whose values are not yet set; `body` must write all of them.
    @inlinable
    public init(shape: [Int], initializingWith body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self._shape = shape
        self.storage = TensorStorage(uninitializedCount: shape.reduce(1, *))
        self._gradientNode = nil
        try body(UnsafeMutableBufferPointer(start: storage.base, count: storage.count))
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self._shape = shape
        self.storage = TensorStorage(repeating: value, count: shape.reduce(1, *))
        self._gradientNode = nil
    }

    /// A tensor holding `values` (row-major) with the given shape.
    public init(_ values: [Float], shape: [Int]) {
        let count = shape.reduce(1, *)
        precondition(values.count == count,
                     "\(values.count) values cannot fill shape \(shape) (\(count) elements)")
        self.init(shape: shape) { buffer in _ = buffer.initialize(from: values) }
    }

    /// A rank-1 tensor holding `values`.
    public init(_ values: [Float]) { self.init(values, shape: [values.count]) }

    /// A scalar (rank-0) tensor.
    public init(scalar: Float) { self.init([scalar], shape: []) }

    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(repeating: 0, shape: shape) }
    public static func ones(_ shape: [Int]) -> Tensor { Tensor(repeating: 1, shape: shape) }

    /// Samples from N(mean, std²), drawn from `generator` in row-major order.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, standardDeviation: Float = 1,
                                    using generator: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape) { buffer in
            for i in buffer.indices { buffer[i] = mean + standardDeviation * generator.nextStandardNormal() }
        }
    }

    /// Samples from U[lower, upper), drawn from `generator` in row-major order.
    public static func randomUniform(_ shape: [Int], lower: Float = 0, upper: Float = 1,
                                     using generator: inout SeededGenerator) -> Tensor {
        Tensor(shape: shape) { buffer in
            let width = upper - lower
            // lower + width·u can round up to `upper` itself: with u = 1 − 2⁻²⁴ (the largest
            // unit float) and [1, 2) the sum ties and rounds to even, 2. Clamp to keep the
            // interval half-open; no value below `upper` changes.
            let largest = max(lower, upper.nextDown)
            for i in buffer.indices { buffer[i] = min(lower + width * generator.nextUnitFloat(), largest) }
        }
    }

    // MARK: Properties

    public var rank: Int { shape.count }
    public var scalarCount: Int { storage.count }
    /// The values in row-major order.
    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }
    /// The single value of a one-element tensor.
    public var scalar: Float {
        precondition(scalarCount == 1, "scalar needs a one-element tensor, shape is \(shape)")
        return storage.base[0]
    }
    /// Whether gradients flow back through this value.
    public var requiresGradient: Bool { gradientNode != nil }

    /// This value without its link to the autodiff graph (like PyTorch's `detach()`).
    public func detached() -> Tensor {
        var copy = self
        copy.gradientNode = nil
        return copy
    }

    // MARK: Access

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.base, count: storage.count))
    }

    /// Mutable access to the values; copies the storage first if it is shared,
    /// and detaches the tensor from the autodiff graph.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        makeUnique()
        _gradientNode = nil
        return try body(UnsafeMutableBufferPointer(start: storage.base, count: storage.count))
    }

    @inlinable
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    /// The element at a full multi-index (slow; for tests and small tensors).
    public subscript(indices: Int...) -> Float {
        get { storage.base[flatIndex(indices)] }
        set {
            let offset = flatIndex(indices)
            withUnsafeMutableBufferPointer { $0[offset] = newValue }
        }
    }

    private func flatIndex(_ indices: [Int]) -> Int {
        precondition(indices.count == rank, "index \(indices) does not address shape \(shape)")
        var offset = 0
        for (axis, index) in indices.enumerated() {
            precondition(index >= 0 && index < shape[axis], "index \(indices) is outside shape \(shape)")
            offset = offset * shape[axis] + index
        }
        return offset
    }

    // MARK: Shape

    /// The same values viewed with another shape (no copy). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && scalarCount % known == 0,
                         "cannot reshape \(shape) to \(newShape)")
            resolved[inferred] = scalarCount / known
        }
        precondition(resolved.allSatisfy { $0 >= 0 } && resolved.reduce(1, *) == scalarCount,
                     "cannot reshape \(shape) (\(scalarCount) elements) to \(newShape)")
        var result = self
        result._shape = resolved
        let inputShape = shape
        result.record("reshape", inputs: [self]) { gradient in [gradient.reshaped(inputShape)] }
        return result
    }

    /// Rows `range` of the first axis (a batch slice), copied.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "rows \(range) are outside shape \(shape)")
        let rowSize = shape.dropFirst().reduce(1, *)
        var outShape = shape
        outShape[0] = range.count
        var result = Tensor(shape: outShape) { out in
            out.baseAddress!.update(from: storage.base + range.lowerBound * rowSize, count: out.count)
        }
        let inputShape = shape
        result.record("slice", inputs: [self]) { gradient in
            var full = Tensor.zeros(inputShape)
            full.withUnsafeMutableBufferPointer { dst in
                gradient.withUnsafeBufferPointer { src in
                    (dst.baseAddress! + range.lowerBound * rowSize).update(from: src.baseAddress!, count: src.count)
                }
            }
            return [full]
        }
        return result
    }

    public var description: String {
        let preview = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(scalarCount > 8 ? ", …" : "")])"
    }
}
