@testable import NormKitCore
import Testing

@Suite("LargeBlockCache")
struct LargeBlockCacheTests {
    // Own caches with small limits: the shared one is busy with the tests running beside these.
    let kib = 1 << 10

    @Test("a freed large block serves the next allocation of the same size, not of another size")
    func reusesSameSize() {
        let cache = LargeBlockCache(minimumBytes: 4 * kib, capacity: 64 * kib)
        defer { cache.removeAll() }
        let first = cache.allocate(byteCount: 8 * kib)
        #expect(Int(bitPattern: first) % LargeBlockCache.alignment == 0)
        cache.deallocate(first, byteCount: 8 * kib)
        #expect(cache.idleBytes == 8 * kib)
        let other = cache.allocate(byteCount: 12 * kib)
        #expect(other != first && cache.idleBytes == 8 * kib)
        let again = cache.allocate(byteCount: 8 * kib)
        #expect(again == first && cache.idleBytes == 0)
        cache.deallocate(other, byteCount: 12 * kib)
        cache.deallocate(again, byteCount: 8 * kib)
    }

    @Test("blocks below the minimum or above the capacity go straight back to the allocator")
    func keepsOnlyLargeBlocksThatFit() {
        let cache = LargeBlockCache(minimumBytes: 4 * kib, capacity: 64 * kib)
        defer { cache.removeAll() }
        cache.deallocate(cache.allocate(byteCount: 4 * kib - 1), byteCount: 4 * kib - 1)
        cache.deallocate(cache.allocate(byteCount: 64 * kib + 1), byteCount: 64 * kib + 1)
        #expect(cache.idleBytes == 0)
    }

    @Test("the idle blocks stay within the capacity: the oldest are freed, the newest reused first")
    func evictsOldest() {
        let cache = LargeBlockCache(minimumBytes: 4 * kib, capacity: 20 * kib)
        defer { cache.removeAll() }
        let blocks = (0..<7).map { _ in cache.allocate(byteCount: 4 * kib) }
        for block in blocks { cache.deallocate(block, byteCount: 4 * kib) }
        #expect(cache.idleBytes == 20 * kib)
        // The five newest are left; they come back newest first.
        let reused = (0..<5).map { _ in cache.allocate(byteCount: 4 * kib) }
        #expect(reused == Array(blocks[2...].reversed()))
        #expect(cache.idleBytes == 0)
        for block in reused { cache.deallocate(block, byteCount: 4 * kib) }
        cache.removeAll()
        #expect(cache.idleBytes == 0)
    }

    @Test("a tensor of a freed tensor's size gets its storage back")
    func tensorsReuseStorage() {
        // An odd size (1.2 MB) that no other test allocates.
        let count = 300_007
        let first = Tensor(repeating: 1, shape: [count]).withUnsafeBufferPointer { $0.baseAddress! }
        let second = Tensor(repeating: 2, shape: [count])
        #expect(second.withUnsafeBufferPointer { $0.baseAddress! } == first)
        #expect(second.scalars.allSatisfy { $0 == 2 })
    }
}
