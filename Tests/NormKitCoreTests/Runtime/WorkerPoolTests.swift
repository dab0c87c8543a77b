#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import NormKitCore
import Synchronization
import Testing

/// Runs `parallelFor` once and returns how often each chunk ran, counted in a
/// plain buffer each chunk writes only its own slot of (so the counts also show
/// that the chunks' writes are visible to the caller when it returns).
private func visitCounts(chunks: Int) -> [Int] {
    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: chunks)
    defer { counts.deallocate() }
    counts.initialize(repeating: 0)
    Threading.parallelFor(chunks: chunks) { chunk in counts[chunk] += 1 }
    return Array(counts)
}

/// The threads that ran `parallelFor`'s chunks, by `pthread_self()`.
private func threadsRunning(chunks: Int) -> Set<pthread_t> {
    let threads = Mutex(Set<pthread_t>())
    Threading.parallelFor(chunks: chunks) { _ in
        let me = pthread_self()
        threads.withLock { _ = $0.insert(me) }
    }
    return threads.withLock { $0 }
}

/// Runs `chunks` chunks that each wait until all of them have started, then
/// `body(chunk)`: they can only get past the wait together, on `chunks`
/// different threads. Returns those threads, or nil when no attempt gathered
/// them all. An attempt gives up after `patience` (only then is time involved:
/// the call ran inline because another test's call held the pool, or a worker
/// never came); there are up to 10 attempts.
private func gatherThreads(chunks: Int, patience: Duration = .milliseconds(200),
                           then body: (Int) -> Void = { _ in }) -> Set<pthread_t>? {
    for _ in 0..<10 {
        let started = Atomic<Int>(0)
        let gathered = Atomic<Bool>(true)
        let threads = Mutex(Set<pthread_t>())
        Threading.parallelFor(chunks: chunks) { chunk in
            started.add(1, ordering: .relaxed)
            let deadline = ContinuousClock.now + patience
            while started.load(ordering: .relaxed) < chunks {
                if ContinuousClock.now > deadline {
                    gathered.store(false, ordering: .relaxed)
                    break
                }
                sched_yield()
            }
            let me = pthread_self()
            threads.withLock { _ = $0.insert(me) }
            body(chunk)
        }
        if gathered.load(ordering: .relaxed) { return threads.withLock { $0 } }
    }
    return nil
}

// Serialized, and every test holds the thread-count lock: the tests set
// Threading.count and count the threads that took part.
@Suite("Worker pool", .serialized)
struct WorkerPoolTests {
    @Test("every chunk runs exactly once, for many chunk and thread counts", arguments: [2, 3, 4, 8])
    func everyChunkRunsExactlyOnce(threads: Int) {
        withExclusiveThreadCount {
            Threading.count = threads
            for chunks in [0, 1, 2, 3, 5, 7, 16, 63, 100, 1_000] {
                for _ in 0..<5 {
                    #expect(visitCounts(chunks: chunks) == [Int](repeating: 1, count: chunks), "\(chunks) chunks")
                }
            }
        }
    }

    @Test("writes made in the chunks are visible after return, call after call")
    func chunkWritesAreVisibleAfterReturn() {
        withExclusiveThreadCount {
            Threading.count = 2
            let chunks = 4, width = 64
            let values = UnsafeMutableBufferPointer<Int>.allocate(capacity: chunks * width)
            defer { values.deallocate() }
            values.initialize(repeating: -1)
            var stale = 0
            for call in 0..<2_000 {
                Threading.parallelFor(chunks: chunks) { chunk in
                    for i in chunk * width..<(chunk + 1) * width { values[i] = call &* 7 &+ i }
                }
                for i in 0..<chunks * width where values[i] != call &* 7 &+ i { stale += 1 }
            }
            #expect(stale == 0)
        }
    }

    @Test("a parallelFor nested inside a chunk runs inline on that chunk's thread and completes")
    func nestedCallsRunInline() {
        withExclusiveThreadCount {
            Threading.count = 2
            let outer = 4, inner = 5
            let visits = Mutex([Int](repeating: 0, count: outer * inner))
            let foreignThreads = Mutex(0)
            let nest: (Int) -> Void = { o in
                let outerThread = pthread_self()
                Threading.parallelFor(chunks: inner) { i in
                    visits.withLock { $0[o * inner + i] += 1 }
                    if pthread_self() != outerThread { foreignThreads.withLock { $0 += 1 } }
                }
            }
            Threading.parallelFor(chunks: outer, nest)
            #expect(visits.withLock { $0 } == [Int](repeating: 1, count: outer * inner))
            // Once more with the outer chunks held until both threads have one, so
            // that a worker (not only the caller) makes a nested call.
            visits.withLock { $0 = [Int](repeating: 0, count: outer * inner) }
            #expect(gatherThreads(chunks: 2) { nest($0); nest($0 + 2) }?.count == 2)
            #expect(visits.withLock { $0 } == [Int](repeating: 1, count: outer * inner))
            #expect(foreignThreads.withLock { $0 } == 0)
        }
    }

    @Test("calls from several threads at once all complete with every chunk run once")
    func concurrentCallersAllComplete() {
        withExclusiveThreadCount {
            Threading.count = 2
            let failures = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: 4) { caller in
                for call in 0..<300 {
                    let chunks = 2 + (call + caller) % 7
                    if visitCounts(chunks: chunks) != [Int](repeating: 1, count: chunks) {
                        failures.withLock { $0 += 1 }
                    }
                }
            }
            #expect(failures.withLock { $0 } == 0)
        }
    }

    @Test("changing Threading.count between calls grows and shrinks the threads that take part")
    func threadCountChangesAreFollowed() {
        withExclusiveThreadCount {
            for threads in [2, 4, 1, 3, 2, 6, 1, 2] {
                Threading.count = threads
                // Grown: `threads` chunks can be in progress at once.
                #expect(gatherThreads(chunks: threads)?.count == threads, "\(threads) threads")
                // Shrunk: chunks that sleep give every idle worker time to join in,
                // yet no more than `threads` threads (the caller and count − 1 workers) do.
                var seen = Set<pthread_t>()
                for _ in 0..<20 {
                    let threadsThisCall = Mutex(Set<pthread_t>())
                    let visits = Mutex([Int](repeating: 0, count: 3 * threads))
                    Threading.parallelFor(chunks: 3 * threads) { chunk in
                        usleep(100)
                        let me = pthread_self()
                        threadsThisCall.withLock { _ = $0.insert(me) }
                        visits.withLock { $0[chunk] += 1 }
                    }
                    #expect(visits.withLock { $0 } == [Int](repeating: 1, count: 3 * threads))
                    seen.formUnion(threadsThisCall.withLock { $0 })
                }
                #expect(seen.count <= threads, "\(threads) threads allowed, \(seen.count) took part")
            }
        }
    }

    @Test("workers that went to sleep between calls wake for the next one")
    func sleepingWorkersWake() {
        withExclusiveThreadCount {
            Threading.count = 2
            for _ in 0..<10 {
                usleep(300)   // longer than the workers spin
                #expect(gatherThreads(chunks: 2)?.count == 2)
            }
        }
    }

    @Test("the caller waits for a chunk that takes longer than it spins")
    func callerWaitsForSlowChunks() {
        withExclusiveThreadCount {
            Threading.count = 2
            for _ in 0..<10 {
                let caller = pthread_self()
                let finished = Mutex([false, false])
                // Both chunks start together, so the worker has one; it sleeps
                // (500 µs) while the caller, done with its own, waits.
                let threads = gatherThreads(chunks: 2) { chunk in
                    if pthread_self() != caller { usleep(500) }
                    finished.withLock { $0[chunk] = true }
                }
                #expect(threads?.count == 2)
                #expect(finished.withLock { $0 } == [true, true])
            }
        }
    }

    @Test("many small calls in a row each run every chunk once")
    func manySmallCalls() {
        withExclusiveThreadCount {
            Threading.count = 2
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 3)
            defer { counts.deallocate() }
            counts.initialize(repeating: 0)
            let calls = 20_000
            for call in 0..<calls {
                // Each slot is written by whichever thread takes its chunk: the
                // previous call's write must be visible to the next call's thread.
                Threading.parallelFor(chunks: 2 + call % 2) { chunk in counts[chunk] += 1 }
            }
            #expect(Array(counts) == [calls, calls, calls / 2])
        }
    }
}
