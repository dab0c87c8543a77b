import Synchronization

/// Large tensor blocks recently freed, kept for the next tensor of the same size.
///
/// Why: a training step allocates and frees the same large activations and gradients on every
/// step (the seed CNN at batch 64: about 60 MB in blocks of 0.8–6.4 MB). glibc serves them from
/// the top of its heap and, depending on where small long-lived allocations happen to land,
/// returns that top to the kernel when a step frees it; the next step then faults every page
/// back in and the kernel clears it. In a full Fashion-MNIST epoch that cost up to 9 % of the
/// CPU time, more or less from run to run. Reusing the blocks costs at most `capacity` bytes
/// of memory kept between steps.
///
/// Blocks of `minimumBytes` or more are cached, up to `capacity` bytes in all; beyond that the
/// oldest are freed. A block is reused only for the same byte count (a step asks for the same
/// sizes again), so nothing is wasted on a larger block serving a smaller tensor. Thread-safe:
/// a tensor may be freed on any thread.
final class LargeBlockCache: Sendable {
    /// The cache every tensor storage uses: blocks of 1 MiB or more, 64 MiB in all.
    static let shared = LargeBlockCache(minimumBytes: 1 << 20, capacity: 64 << 20)
    /// Every block is aligned to this many bytes (a cache line: AVX-512 loads never straddle two).
    static let alignment = 64

    let minimumBytes: Int
    let capacity: Int

    init(minimumBytes: Int, capacity: Int) {
        self.minimumBytes = minimumBytes
        self.capacity = capacity
    }

    /// An idle block. Only the cache's lock reaches it, and a block leaves the cache before its
    /// memory is used again: handing it between threads is safe.
    private struct Block: @unchecked Sendable {
        let byteCount: Int
        let base: UnsafeMutableRawPointer
    }

    /// Idle blocks, oldest first, and their total size.
    private let idle = Mutex<(blocks: [Block], bytes: Int)>(([], 0))

    /// A block of `byteCount` bytes (uninitialized), from the cache when one of that size is idle.
    func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount >= minimumBytes {
            let reused: Block? = idle.withLock { state in
                // The newest of that size: the one most likely still in cache and in the TLB.
                guard let index = state.blocks.lastIndex(where: { $0.byteCount == byteCount }) else { return nil }
                state.bytes -= byteCount
                return state.blocks.remove(at: index)
            }
            if let reused { return reused.base }
        }
        return UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: Self.alignment)
    }

    /// Gives back a block from `allocate(byteCount:)` with the same `byteCount`.
    func deallocate(_ base: UnsafeMutableRawPointer, byteCount: Int) {
        guard byteCount >= minimumBytes && byteCount <= capacity else {
            base.deallocate()
            return
        }
        let evicted: [Block] = idle.withLock { state in
            state.blocks.append(Block(byteCount: byteCount, base: base))
            state.bytes += byteCount
            var oldest = 0, freed = 0
            while state.bytes - freed > capacity {
                freed += state.blocks[oldest].byteCount
                oldest += 1
            }
            defer {
                state.blocks.removeFirst(oldest)
                state.bytes -= freed
            }
            return Array(state.blocks[..<oldest])
        }
        // Outside the lock: free() of a large block can take a while (munmap).
        for block in evicted { block.base.deallocate() }
    }

    /// Bytes held by idle blocks (for tests).
    var idleBytes: Int { idle.withLock { $0.bytes } }

    /// Frees every idle block (for tests, and for callers that want the memory back).
    func removeAll() {
        let blocks = idle.withLock { state in
            defer { state = ([], 0) }
            return state.blocks
        }
        for block in blocks { block.base.deallocate() }
    }
}
