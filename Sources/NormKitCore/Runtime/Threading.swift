import Synchronization

/// How many threads NormKit's kernels may use.
///
/// One setting for the whole process: the API (`Threading.count = 2`), the CLI's
/// `--threads` and the `NORMKIT_THREADS` environment variable all set it.
/// It defaults to the number of cores the process may run on.
public enum Threading {
    private static let storage = Atomic<Int>(initialCount())

    public static var count: Int {
        get { storage.load(ordering: .relaxed) }
        set {
            precondition(newValue >= 1, "thread count must be at least 1, got \(newValue)")
            storage.store(newValue, ordering: .relaxed)
        }
    }

    private static func initialCount() -> Int {
        if let text = getenvString("NORMKIT_THREADS"), let n = Int(text), n >= 1 { return n }
        return max(1, availableCores())
    }

    /// Runs `body(chunk)` for every `chunk` in 0..<chunks exactly once, on up to
    /// `count` threads (the calling thread is one of them), and returns when all
    /// have finished; their writes are visible to the caller afterwards.
    ///
    /// Runs inline when there is one chunk or one thread, so small work pays
    /// nothing. Otherwise NormKit's worker pool (`count − 1` persistent threads,
    /// started on first use) takes the chunks: about 0.1 µs per call when the
    /// workers are awake. A call made while the pool is busy (from another
    /// thread, or nested inside a chunk) runs its chunks inline on its own thread.
    /// A call that reaches the pool makes one small heap allocation (Dispatch made four).
    @inlinable
    public static func parallelFor(chunks: Int, _ body: (Int) -> Void) {
        if chunks <= 1 || count == 1 {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        _WorkerPool.run(chunks: chunks, body)
    }
}
