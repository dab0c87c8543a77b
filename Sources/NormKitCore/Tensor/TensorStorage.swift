#if DEBUG
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
#endif

/// The heap block behind a `Tensor`: `count` Float32 values, 64-byte aligned so
/// that AVX-512 loads never straddle a cache line. Large blocks come from, and go back
/// to, `LargeBlockCache`, so that a training step reuses the last step's.
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
        #if DEBUG
        TensorStorage.countAllocation()
        #endif
        let raw = LargeBlockCache.shared.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride)
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

    deinit {
        LargeBlockCache.shared.deallocate(UnsafeMutableRawPointer(base), byteCount: max(count, 1) * MemoryLayout<Float>.stride)
    }
}

#if DEBUG

/// Debug builds count the storage blocks allocated on one watched thread, so a
/// test can prove that a steady-state training step allocates none (tests run
/// in parallel: counting every thread would count the other tests' tensors).
extension TensorStorage {
    private static let watchedThread = Atomic<UInt>(0)
    nonisolated(unsafe) private static var watchedCount = 0

    private static var currentThread: UInt {
        #if canImport(Darwin)
        UInt(bitPattern: pthread_self())
        #else
        UInt(pthread_self())
        #endif
    }

    static func countAllocation() {
        let watched = watchedThread.load(ordering: .relaxed)
        if watched != 0 && watched == currentThread { watchedCount += 1 }
    }

    /// Runs `body` on the calling thread and returns how many tensor storages it allocated there.
    static func allocations(during body: () throws -> Void) rethrows -> Int {
        let me = currentThread
        precondition(watchedThread.compareExchange(expected: 0, desired: me, ordering: .relaxed).exchanged,
                     "TensorStorage.allocations(during:) does not nest and runs on one thread at a time")
        watchedCount = 0
        defer { watchedThread.store(0, ordering: .relaxed) }
        try body()
        return watchedCount
    }
}
#endif
