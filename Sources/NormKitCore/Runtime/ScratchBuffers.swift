import Synchronization

/// Float scratch buffers that kernels borrow and give back, so a training step
/// does not allocate (and, above glibc's mmap threshold, page-fault in) its
/// im2col matrices and partial sums on every call.
///
/// Borrowing is thread-safe; each borrowed buffer belongs to one borrower until
/// it is returned. The pool keeps at most `capacity` idle buffers.
public enum ScratchBuffers {
    final class Block: @unchecked Sendable {
        let count: Int
        let base: UnsafeMutablePointer<Float>
        init(count: Int) {
            self.count = count
            base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: max(count, 1))
        }
        deinit { UnsafeMutableRawPointer(base).deallocate() }
    }

    private static let idle = Mutex<[Block]>([])
    private static let capacity = 16

    /// Runs `body` with an uninitialized buffer of at least `count` floats, 64-byte aligned.
    public static func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let block = borrow(count: count)
        defer { giveBack(block) }
        return try body(block.base)
    }

    private static func borrow(count: Int) -> Block {
        let reused: Block? = idle.withLock { blocks in
            // The smallest idle block that is large enough, found in one pass: the
            // pool exists so that a step does not allocate, so its lookup must not either.
            var best: Int? = nil
            for index in blocks.indices where blocks[index].count >= count {
                if best.map({ blocks[index].count < blocks[$0].count }) ?? true { best = index }
            }
            return best.map { blocks.remove(at: $0) }
        }
        return reused ?? Block(count: count)
    }

    private static func giveBack(_ block: Block) {
        idle.withLock { blocks in
            blocks.append(block)
            if blocks.count > capacity, let smallest = blocks.indices.min(by: { blocks[$0].count < blocks[$1].count }) {
                blocks.remove(at: smallest)
            }
        }
    }
}
