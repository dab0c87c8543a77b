/// The heap block behind a `Tensor`: `count` Float32 values, 64-byte aligned so
/// that AVX-512 loads never straddle a cache line.
///
/// Storage is shared between tensor values until one of them mutates
/// (copy-on-write, see `Tensor.makeUnique()`); it is never resized.
@usableFromInline
final class TensorStorage: @unchecked Sendable {
    @usableFromInline let count: Int
    @usableFromInline let base: UnsafeMutablePointer<Float>

    @usableFromInline
    init(uninitializedCount count: Int) {
        precondition(count >= 0, "a tensor cannot hold \(count) elements")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        self.base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    @usableFromInline
    convenience init(repeating value: Float, count: Int) {
        self.init(uninitializedCount: count)
        base.initialize(repeating: value, count: count)
    }

    @usableFromInline
    func copy() -> TensorStorage {
        let clone = TensorStorage(uninitializedCount: count)
        clone.base.update(from: base, count: count)
        return clone
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }
}
