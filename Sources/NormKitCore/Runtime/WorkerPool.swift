#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

// NormKit's own persistent worker threads behind `Threading.parallelFor`.
//
// Why not Dispatch: kernels call parallelFor on chunks of a few microseconds
// to a few milliseconds, and `DispatchQueue.concurrentPerform` costs 0.15 µs
// and four mallocs per call even when the caller runs every chunk itself, and
// about 0.9 µs to hand a chunk to a thread that is awake. Here the
// `Threading.count − 1` workers spin briefly on one atomic word after each job,
// so the next job, published by one store, costs 0.09 µs when the caller runs
// it alone and about 0.4 µs when a worker takes a chunk; only a worker idle for
// longer than `_WorkerPoolTuning.spinNanoseconds` goes to sleep on a condition
// variable (no CPU while the program is serial). Waking it costs about as much
// as waking a Dispatch thread (≈ 17 µs here). Numbers: Benchmarks `threading/…`.
//
// The pool uses exactly `Threading.count` threads. `concurrentPerform` ran the
// caller and two workers on the 2-core machine: three runnable threads get a
// larger share of a CPU that other processes also want, and the seed CNN's
// step, whose chunks take milliseconds, measured 5–16 % slower with the pool
// than with Dispatch at load 4–7 (faster with `Threading.count = 3`).
//
// The job word packs (job number << 32) | chunks still unclaimed. A thread
// claims a chunk with a compare-exchange that lowers the count by one; the job
// number makes a claim that was prepared against an older job fail (no ABA
// unless a thread stalls across exactly 2³² jobs). The job's body and chunk
// count sit beside the word and are read only after a successful claim: the job
// cannot finish, and so cannot be replaced, before the claimer reports its chunk.
//
// One job at a time: the caller takes the pool with a try-lock. A call that finds
// it busy (another thread's job, or a parallelFor nested inside a chunk) runs
// its chunks inline on its own thread, so nothing ever waits for the pool and
// nesting cannot deadlock.
//
// One heap allocation per call remains (32 bytes, measured with the benchmarks'
// malloc counter; Dispatch made four): `withoutActuallyEscaping` wraps the
// non-escaping body in an escaping closure whose context lives on the heap, and
// it is the only sanctioned way to let another thread call a non-escaping one. The
// body itself stays in the caller's frame and the workers read it through a
// pointer. Creating, adding or removing threads allocates too (once, or when
// `Threading.count` changes).

/// Timing constants of the worker pool.
enum _WorkerPoolTuning {
    /// How long an idle thread polls for the next job (or the caller for the
    /// last chunk) before it sleeps: long enough to cover the serial gaps
    /// between the kernels of one training step, short enough not to burn a
    /// core while the program is doing something else.
    static let spinNanoseconds: UInt64 = 50_000
    /// Polls between two `sched_yield` calls (and clock reads) while spinning,
    /// so that a spinning thread lets another runnable thread on its core go
    /// first (the machine may have fewer cores than threads).
    static let pollsPerYield = 256
}

/// The persistent threads that run `Threading.parallelFor`'s chunks.
///
/// Workers are created on the first parallel call, and the pool follows
/// `Threading.count` at the start of every parallel call: raising the count
/// starts the missing workers, lowering it stops the extra ones (they finish
/// and are joined before the call goes on). Setting the count to 1 runs every
/// call inline and leaves the existing workers asleep (no CPU) until the next
/// parallel call with a larger count resizes the pool.
@usableFromInline
final class _WorkerPool: Sendable {
    @usableFromInline
    static let shared = _WorkerPool()

    private static let chunkMask: UInt64 = 0xFFFF_FFFF

    /// (job number << 32) | chunks not yet claimed.
    private let job = Atomic<UInt64>(0)
    /// The published job's body: the address of a `_Job` in the caller's frame
    /// (as an integer: an atomic pointer would not be `Sendable`).
    private let body = Atomic<UInt>(0)
    /// The published job's chunk count.
    private let chunkCount = Atomic<Int>(0)
    /// Chunks claimed but not yet reported done (the caller waits for 0).
    private let unfinished = Atomic<Int>(0)
    /// Workers between "no work" and the end of their condition-variable wait.
    private let sleepingWorkers = Atomic<Int>(0)
    /// Set while the caller sleeps waiting for the last chunk.
    private let callerSleeping = Atomic<Bool>(false)
    /// The try-lock: true while one caller's job owns the pool.
    private let busy = Atomic<Bool>(false)
    /// Workers with an index at or above this stop.
    private let workerTarget = Atomic<Int>(0)
    /// The running workers' thread handles; changed only by the pool's owner.
    private let threads = Mutex<[pthread_t]>([])

    /// Guards the two condition variables' predicates; never held while a chunk runs.
    /// (Allocated once and never freed: the pool lives as long as the process.)
    private nonisolated(unsafe) let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Workers sleep here until a job (or a stop) is published.
    private nonisolated(unsafe) let workAvailable: UnsafeMutablePointer<pthread_cond_t>
    /// The caller sleeps here until the last chunk is done.
    private nonisolated(unsafe) let jobFinished: UnsafeMutablePointer<pthread_cond_t>

    private init() {
        mutex = .allocate(capacity: 1)
        workAvailable = .allocate(capacity: 1)
        jobFinished = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workAvailable, nil)
        pthread_cond_init(jobFinished, nil)
    }

    /// Runs `body(chunk)` for every chunk in 0..<chunks on the pool's workers and
    /// the calling thread, and returns when all are done; runs them inline when
    /// the pool is busy (a concurrent or nested call).
    @usableFromInline
    static func run(chunks: Int, _ body: (Int) -> Void) {
        precondition(chunks < Int(chunkMask), "parallelFor supports fewer than 2^32 - 1 chunks, got \(chunks)")
        let pool = shared
        guard pool.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        // The closure never outlives this call: every worker reports its chunks
        // (after its last use of the closure) before `perform` returns. It is
        // published inside a `_Job`, whose field keeps the closure's own
        // representation; a pointer to the bare closure (a generic `T`) would
        // need a reabstraction thunk, allocated on the heap on every call.
        withoutActuallyEscaping(body) { escapable in
            var job = _Job(body: escapable)
            withUnsafeMutablePointer(to: &job) { pointer in
                pool.perform(chunks: chunks, job: UnsafeRawPointer(pointer))
            }
        }
        pool.busy.store(false, ordering: .releasing)
    }

    /// Publishes one job, helps with it and waits for it. The caller owns the pool.
    private func perform(chunks: Int, job jobPointer: UnsafeRawPointer) {
        resize(workers: Threading.count - 1)

        body.store(UInt(bitPattern: jobPointer), ordering: .relaxed)
        chunkCount.store(chunks, ordering: .relaxed)
        unfinished.store(chunks, ordering: .relaxed)
        let number = (job.load(ordering: .relaxed) >> 32) &+ 1
        // Sequentially consistent with the workers' (sleepingWorkers += 1; load job):
        // either a worker about to sleep sees this job, or this sees the sleeper.
        job.store(number << 32 | UInt64(chunks), ordering: .sequentiallyConsistent)
        if sleepingWorkers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(workAvailable)
            pthread_mutex_unlock(mutex)
        }

        let ran = runClaimedChunks()
        if unfinished.subtract(ran, ordering: .acquiringAndReleasing).newValue != 0 {
            waitForWorkers()
        }
    }

    /// Claims chunks of the published job and runs them until none is left;
    /// returns how many this thread ran. All of them belong to one job: the job
    /// cannot change while this thread holds a claimed, unreported chunk.
    private func runClaimedChunks() -> Int {
        var ran = 0
        var word = job.load(ordering: .acquiring)
        while word & Self.chunkMask != 0 {
            let (claimed, current) = job.compareExchange(
                expected: word, desired: word - 1, successOrdering: .acquiring, failureOrdering: .acquiring)
            guard claimed else {
                word = current
                continue
            }
            let chunks = chunkCount.load(ordering: .relaxed)
            _runChunk(UnsafeRawPointer(bitPattern: body.load(ordering: .relaxed))!, chunks - Int(word & Self.chunkMask))
            ran += 1
            word -= 1
        }
        return ran
    }

    /// The caller's wait for chunks other threads claimed: spin, then sleep.
    private func waitForWorkers() {
        if _spin(until: { unfinished.load(ordering: .acquiring) == 0 }) { return }
        // A long chunk: sleep until its worker reports it.
        callerSleeping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        while unfinished.load(ordering: .sequentiallyConsistent) != 0 {
            pthread_cond_wait(jobFinished, mutex)
        }
        pthread_mutex_unlock(mutex)
        // A late worker may still see `true` and signal nobody: harmless.
        callerSleeping.store(false, ordering: .relaxed)
    }

    /// A worker's life: run chunks while there are any, spin for the next job,
    /// sleep when none comes, stop when its index is no longer wanted.
    fileprivate func workerLoop(index: Int) {
        while true {
            let ran = runClaimedChunks()
            if ran > 0 {
                // Sequentially consistent with the caller's (callerSleeping = true; load unfinished).
                if unfinished.subtract(ran, ordering: .sequentiallyConsistent).newValue == 0,
                   callerSleeping.load(ordering: .sequentiallyConsistent) {
                    pthread_mutex_lock(mutex)
                    pthread_cond_signal(jobFinished)
                    pthread_mutex_unlock(mutex)
                }
            }
            if !waitForWork(index: index) { return }
        }
    }

    /// Waits until a job has unclaimed chunks (true) or this worker must stop (false).
    private func waitForWork(index: Int) -> Bool {
        var mustStop = false
        let woken = _spin {
            if job.load(ordering: .relaxed) & Self.chunkMask != 0 { return true }
            mustStop = index >= workerTarget.load(ordering: .relaxed)
            return mustStop
        }
        if woken { return !mustStop }
        sleepingWorkers.add(1, ordering: .sequentiallyConsistent)
        defer { sleepingWorkers.subtract(1, ordering: .relaxed) }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if job.load(ordering: .sequentiallyConsistent) & Self.chunkMask != 0 { return true }
            if index >= workerTarget.load(ordering: .relaxed) { return false }
            pthread_cond_wait(workAvailable, mutex)
        }
    }

    /// Starts or stops workers until `workers` run. Called by the pool's owner
    /// between jobs, so no worker holds a chunk.
    private func resize(workers wanted: Int) {
        let current = workerTarget.load(ordering: .relaxed)
        guard wanted != current else { return }
        threads.withLock { threads in
            if wanted < current {
                // The stop is published under the mutex, so a worker checking it
                // before its wait cannot miss the broadcast.
                pthread_mutex_lock(mutex)
                workerTarget.store(wanted, ordering: .relaxed)
                pthread_cond_broadcast(workAvailable)
                pthread_mutex_unlock(mutex)
                for thread in threads[wanted...] { pthread_join(thread, nil) }
                threads.removeSubrange(wanted...)
            } else {
                workerTarget.store(wanted, ordering: .relaxed)
                for index in current..<wanted { threads.append(_startWorker(index: index)) }
            }
        }
    }
}

/// Polls `isDone` until it holds (true) or about `spinNanoseconds` have passed
/// (false), yielding the CPU every `pollsPerYield` polls: how both the caller
/// and idle workers wait before they sleep, since a job usually arrives or
/// finishes within microseconds and a condition-variable wake-up costs ~17 µs.
@inline(__always)
private func _spin(until isDone: () -> Bool) -> Bool {
    var polls = 0
    var started: UInt64 = 0
    while !isDone() {
        polls += 1
        if polls % _WorkerPoolTuning.pollsPerYield != 0 { continue }
        sched_yield()
        let now = _monotonicNanoseconds()
        if started == 0 {
            started = now
        } else if now - started > _WorkerPoolTuning.spinNanoseconds {
            return false
        }
    }
    return true
}

/// Runs one chunk through the published closure. Not inlined, so the
/// closure's retain and release both happen before the chunk is reported done
/// (`withoutActuallyEscaping` checks that no copy outlives the call).
@inline(never)
private func _runChunk(_ job: UnsafeRawPointer, _ chunk: Int) {
    job.assumingMemoryBound(to: _Job.self).pointee.body(chunk)
}

/// The chunk body as the workers find it, in the caller's frame.
private struct _Job {
    var body: (Int) -> Void
}

private func _monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}

/// Starts the worker thread with `index`; its argument is the index + 1
/// (never a null pointer), so starting a thread allocates nothing of ours.
private func _startWorker(index: Int) -> pthread_t {
    #if canImport(Darwin)
    var thread: pthread_t?
    let started = pthread_create(&thread, nil, { argument in
        _WorkerPool.shared.workerLoop(index: Int(bitPattern: argument) - 1)
        return nil
    }, UnsafeMutableRawPointer(bitPattern: index + 1))
    precondition(started == 0 && thread != nil, "could not start a worker thread (error \(started))")
    return thread!
    #else
    var thread = pthread_t()
    let started = pthread_create(&thread, nil, { argument in
        _WorkerPool.shared.workerLoop(index: Int(bitPattern: argument) - 1)
        return nil
    }, UnsafeMutableRawPointer(bitPattern: index + 1))
    precondition(started == 0, "could not start a worker thread (error \(started))")
    return thread
    #endif
}

