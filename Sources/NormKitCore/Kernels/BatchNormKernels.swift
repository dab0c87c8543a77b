// Batch-normalization kernels: a forward/backward pair over raw buffers.
//
// Layout contract: x is viewed as (outer, channels, inner), row-major. A
// channels-first tensor (N, C, L…) has outer = N, inner = L…; a channels-last
// one (N, …, C) has outer = N·…, inner = 1. Every channel owns
// m = outer · inner values.
//
// How they are fast (numbers in Benchmarks/README.md):
// - Every pass sweeps memory in order (what hardware prefetchers follow best;
//   walking one channel of an NCHW tensor at a time, in pieces of `inner`
//   floats a whole row apart, measured 3–4× slower). Threads take contiguous
//   ranges of channels-last rows or channels-first lines (`inner` floats of
//   one channel), each with its own per-channel partial sums, added up
//   afterwards. Channels-last rows (inner == 1) are vectorized across channels.
// - The second pass of the training forward and of the backward (apply after
//   the statistics, dx after the sums) runs forward over the rows its chunk
//   read in the first. Running it in reverse, to start on what the first pass
//   left in cache, measured slower: little of a 25–51 MB tensor survives in
//   cache once the output streams through, and lines taken last to first
//   restart the prefetchers at every line (the NCHW backward of
//   (64, 64, 56, 56) and (128, 256, 14, 14) took 1.35–1.5× as long).
// - Channels-first inner loops work on SIMD16<Float> (one AVX-512 register
//   with the `NativeCPU` trait) with a scalar tail (the statistics: a last
//   vector overlapping the counted floats, masked); sums are kept in
//   SIMD8<Double>. The channels-first statistics read each chunk as two
//   streams (its two halves), which keeps more reads in flight per core
//   (`_addShiftedLineSums`). Channels-last rows are cut into runs of 64, 16
//   and 1 channels (ChannelRuns.swift) and taken 4 rows at a time, so a run's
//   constants or partial sums stay in registers over 4 rows instead of being
//   reloaded (and, for sums, stored) for every row. A row of exactly 16, 32 or
//   64 channels is a single run, and every pass keeps its partial sums or
//   constants in registers over the thread's whole range of rows. At 64
//   channels (one thread, data in L2) that took the compute of the statistics
//   to 0.71×, of the apply pass to 0.58× (now as cheap as channels-first), of
//   the training forward to 0.80× and of the backward to 0.82×. Memory-bound
//   at (64, 64, 56, 56), those kernels ran as fast as before or faster.
// - Work below `_BatchNormTuning.parallelGrain` elements per thread runs on
//   the calling thread; nothing allocates on the heap for small shapes.
//
// Statistics are "shifted sums" in Double: with k a value of the channel,
// S = Σ(x − k) and Q = Σ(x − k)² give mean = k + S/m and
// variance = Q/m − (S/m)². Every x − k is formed in Double (exact for Floats
// within 2^29 of each other), so the only cancellation is in Q/m − (S/m)²,
// which loses a factor 1 + (mean − k)²/variance of Double's 1e-16 relative
// precision. When (mean − k)² > 16·variance the pass is repeated with
// k = mean rounded to Float, which makes that factor ≤ 1 + 1/16 (two-pass):
// at most 17 × Double rounding either way, far below Float resolution, for
// any data (mean 1e4 and std 1e-3 included). One pass suffices in the usual
// case because k is one of the channel's own values.

/// Tuning constants of the batch-norm kernels.
@usableFromInline
enum _BatchNormTuning {
    /// Elements per thread below which splitting costs more than it saves.
    /// Handing a chunk to a worker of the pool costs 0.4–1.3 µs while the worker
    /// still spins from the previous call and about 17 µs once it has gone to
    /// sleep (as with Dispatch); medians on the loaded 2-core machine, from
    /// `threading/pool-handoff`-style runs. 32 Ki floats take a few microseconds.
    static let parallelGrain = 1 << 15
    /// Largest (mean − k)² / variance accepted from the one-pass shifted sums.
    static let shiftTolerance = 16.0
}

// MARK: - Splitting the work

/// How many chunks to split `work` elements into: `threads` when given
/// (tests force a split), else as many as `Threading.count` allows with at least
/// `parallelGrain` elements each; never more than `units` (channels or rows).
@inline(__always)
private func _chunkCount(work: Int, units: Int, threads: Int?) -> Int {
    let wanted = threads ?? min(Threading.count, work / _BatchNormTuning.parallelGrain)
    return max(1, min(wanted, units))
}

/// What threads split: channels-last rows (each holds every channel), or
/// channels-first lines (`inner` values of one channel, `outer · channels` of
/// them in memory order). Splitting lines rather than whole rows keeps the
/// chunks contiguous and balanced for any batch size, and still splits when
/// outer is 1 (one group-norm call normalizes all its rows as channels of
/// outer 1).
@inline(__always)
private func _splitUnits(outer: Int, channels: Int, inner: Int) -> Int {
    inner == 1 ? outer : outer * channels
}

/// The `chunk`-th of `chunks` near-equal parts of 0..<count.
@inline(__always)
private func _part(_ chunk: Int, of chunks: Int, count: Int) -> Range<Int> {
    (count * chunk / chunks)..<(count * (chunk + 1) / chunks)
}

// MARK: - Shifted sums

/// Σ(x − k) and Σ(x − k)² in Double over `rows` lines of `length` floats,
/// `rowStride` apart. Four independent accumulator pairs keep the adds'
/// latency hidden.
@inline(__always)
private func _shiftedSums(_ first: UnsafePointer<Float>, rows: Int, rowStride: Int, length: Int,
                          shift k: Double) -> (sum: Double, squares: Double) {
    let kv = SIMD8<Double>(repeating: k)
    var s0 = SIMD8<Double>(), s1 = SIMD8<Double>(), s2 = SIMD8<Double>(), s3 = SIMD8<Double>()
    var q0 = SIMD8<Double>(), q1 = SIMD8<Double>(), q2 = SIMD8<Double>(), q3 = SIMD8<Double>()
    var sum = 0.0, squares = 0.0
    for row in 0..<rows {
        let line = first + row * rowStride
        var i = 0
        while i + 32 <= length {
            let v = _load16(line + i), w = _load16(line + i + 16)
            let d0 = SIMD8<Double>(v.lowHalf) - kv, d1 = SIMD8<Double>(v.highHalf) - kv
            let d2 = SIMD8<Double>(w.lowHalf) - kv, d3 = SIMD8<Double>(w.highHalf) - kv
            s0 += d0; s1 += d1; s2 += d2; s3 += d3
            q0 = _addSquare(q0, d0); q1 = _addSquare(q1, d1); q2 = _addSquare(q2, d2); q3 = _addSquare(q3, d3)
            i += 32
        }
        if i + 16 <= length {
            let v = _load16(line + i)
            let d0 = SIMD8<Double>(v.lowHalf) - kv, d1 = SIMD8<Double>(v.highHalf) - kv
            s0 += d0; s1 += d1
            q0 = _addSquare(q0, d0); q1 = _addSquare(q1, d1)
            i += 16
        }
        while i < length {
            let d = Double(line[i]) - k
            sum += d; squares += d * d
            i += 1
        }
    }
    return (sum + ((s0 + s1) + (s2 + s3)).sum(), squares + ((q0 + q1) + (q2 + q3)).sum())
}

/// The sum of v's lanes by halving (4 + 4, 2 + 2, 1 + 1): three extracts and
/// three adds. `SIMD8<Double>.sum()` compiled to about 55 shuffles and adds,
/// as much work as the rest of a 196-float line.
@inline(__always)
private func _halvingSum(_ v: SIMD8<Double>) -> Double {
    let four = v.lowHalf + v.highHalf
    let two = four.lowHalf + four.highHalf
    return two[0] + two[1]
}

/// Lane i of a 16-float vector is i (for masking the lanes of a tail).
private let _laneIndices = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/// Σ(x − k) and Σ(x − k)² in Double, as SIMD8 partial sums, of two lines of
/// `inner` ≥ 16 floats at once, each with its own shift.
///
/// A last partial vector is loaded ending at the line's end, overlapping
/// floats already counted; `counted` marks those lanes, which are replaced by
/// the shift so they add exactly 0 (the shift is a Float: a channel's value or
/// a mean rounded to Float). For a 14×14 map (196 = 12·16 + 4 floats) that
/// replaces a scalar tail of 4 dependent Double adds per line.
@inline(__always)
private func _linePairShiftedSums(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, inner: Int,
                                  shifts ka: Double, _ kb: Double, counted: SIMDMask<SIMD16<Int32>>)
    -> (sumA: SIMD8<Double>, squaresA: SIMD8<Double>, sumB: SIMD8<Double>, squaresB: SIMD8<Double>) {
    let kva = SIMD8<Double>(repeating: ka), kvb = SIMD8<Double>(repeating: kb)
    var sa0 = SIMD8<Double>(), sa1 = SIMD8<Double>(), qa0 = SIMD8<Double>(), qa1 = SIMD8<Double>()
    var sb0 = SIMD8<Double>(), sb1 = SIMD8<Double>(), qb0 = SIMD8<Double>(), qb1 = SIMD8<Double>()
    var i = 0
    while i &+ 16 <= inner {
        let v = _load16(a + i), w = _load16(b + i)
        let da0 = SIMD8<Double>(v.lowHalf) - kva, da1 = SIMD8<Double>(v.highHalf) - kva
        let db0 = SIMD8<Double>(w.lowHalf) - kvb, db1 = SIMD8<Double>(w.highHalf) - kvb
        sa0 += da0; sa1 += da1; sb0 += db0; sb1 += db1
        qa0 = _addSquare(qa0, da0); qa1 = _addSquare(qa1, da1); qb0 = _addSquare(qb0, db0); qb1 = _addSquare(qb1, db1)
        i &+= 16
    }
    if i < inner {
        var v = _load16(a + (inner &- 16)), w = _load16(b + (inner &- 16))
        v.replace(with: Float(ka), where: counted)
        w.replace(with: Float(kb), where: counted)
        let da0 = SIMD8<Double>(v.lowHalf) - kva, da1 = SIMD8<Double>(v.highHalf) - kva
        let db0 = SIMD8<Double>(w.lowHalf) - kvb, db1 = SIMD8<Double>(w.highHalf) - kvb
        sa0 += da0; sa1 += da1; sb0 += db0; sb1 += db1
        qa0 = _addSquare(qa0, da0); qa1 = _addSquare(qa1, da1); qb0 = _addSquare(qb0, db0); qb1 = _addSquare(qb1, db1)
    }
    return (sa0 + sa1, qa0 + qa1, sb0 + sb1, qb0 + qb1)
}

/// Adds Σ(x − k[c]) and Σ(x − k[c])² in Double of channels-first `lines`
/// (`inner` floats each; line l belongs to channel l % channels) into `sums`
/// and `squares`.
///
/// The lines are read as two streams, the first and the second half of the
/// range, one line of each at a time: a core reading one stream keeps too few
/// reads in flight to reach the memory's bandwidth (a plain read of a
/// 25–51 MB tensor took 0.85–0.95× the time with two streams). With two
/// threads on the loaded host this pass took 0.75–0.8× the time at
/// (64, 64, 56, 56) and 0.8–0.85× at (128, 256, 14, 14).
///
/// Not inlined: inlined into `_sweepStatistics` on one thread the loop spilled
/// its accumulators and called `SIMD16.highHalf` out of line (2.2× slower).
@inline(never)
private func _addShiftedLineSums(_ x: UnsafePointer<Float>, lines: Range<Int>, channels: Int, inner: Int,
                                 shift k: UnsafePointer<Double>,
                                 sums: UnsafeMutablePointer<Double>, squares: UnsafeMutablePointer<Double>) {
    guard inner >= 16 else {
        for line in lines {
            let c = line % channels
            let (s, q) = _shiftedSums(x + line &* inner, rows: 1, rowStride: 0, length: inner, shift: k[c])
            sums[c] += s
            squares[c] += q
        }
        return
    }
    let counted = _laneIndices .< SIMD16<Int32>(repeating: Int32(16 &- (inner & 15)))
    let half = lines.count / 2
    var la = lines.lowerBound, ca = la % channels
    var lb = la &+ half, cb = lb % channels
    for _ in 0..<half {
        let r = _linePairShiftedSums(x + la &* inner, x + lb &* inner, inner: inner, shifts: k[ca], k[cb],
                                     counted: counted)
        sums[ca] += _halvingSum(r.sumA); squares[ca] += _halvingSum(r.squaresA)
        sums[cb] += _halvingSum(r.sumB); squares[cb] += _halvingSum(r.squaresB)
        la &+= 1; lb &+= 1
        ca &+= 1; if ca == channels { ca = 0 }
        cb &+= 1; if cb == channels { cb = 0 }
    }
    if lb < lines.upperBound {
        // The odd line: taken as both lines of a pair, counted once.
        let r = _linePairShiftedSums(x + lb &* inner, x + lb &* inner, inner: inner, shifts: k[cb], k[cb],
                                     counted: counted)
        sums[cb] += _halvingSum(r.sumA); squares[cb] += _halvingSum(r.squaresA)
    }
}

/// Channels-last rows handled per visit of a channel run: its constants or
/// partial sums are loaded once and used on this many rows.
private let _rowBlock = 4

/// Calls `body(first, count, stride)` on blocks of `count` rows that together
/// cover `rows` once: rows first, first + stride/channels,
/// first + 2·stride/channels, …
///
/// Rows of 64 channels or more are taken from `parts` (2 or 4) distant parts
/// of the range, one row from each per block, so each part is read front to
/// back as its own stream; a block of four adjacent rows visits its 1–4 KiB in
/// an order the prefetchers do not follow (runs of 64 channels of row 0,
/// row 1, …, then the next runs), which measured up to 2.3× slower for the
/// statistics and 1.3× for the backward sums at 96–512 channels. How many
/// parts depends on how many tensors the pass sweeps: every part of every
/// tensor is a stream. The dx pass sweeps x, dy and dx: with 4 parts (12
/// streams per core) the backward took 1.03–1.07× as long as with 2 at
/// (128, 256, 14, 14) (and 1.03–1.11× at (64, 64, 56, 56), measured before
/// rows of 64 channels became a single run that never comes here). The
/// statistics sweep x alone and need 4: with 2 they took 1.06–1.12× as long
/// at 256 channels. The other passes measured the same with 2 or 4 and keep 4.
/// Shorter rows are taken four adjacent ones at a time: those blocks are
/// 1 KiB or less, and eight or more short streams measured slower (1.27× for
/// the backward sums at 32 channels).
/// Full blocks pass a constant count, so the body's row loop unrolls.
@inline(__always)
private func _forEachRowBlock(_ rows: Range<Int>, channels: Int, parts: Int = _rowBlock,
                              _ body: (_ first: Int, _ count: Int, _ stride: Int) -> Void) {
    if channels < 64 {
        var row = rows.lowerBound
        while row &+ _rowBlock <= rows.upperBound {
            body(row, _rowBlock, channels)
            row &+= _rowBlock
        }
        if row < rows.upperBound { body(row, rows.upperBound &- row, channels) }
        return
    }
    let partLength: Int
    if parts == 2 {
        partLength = rows.count / 2
        for i in 0..<partLength { body(rows.lowerBound &+ i, 2, partLength &* channels) }
    } else {
        partLength = rows.count / _rowBlock
        for i in 0..<partLength { body(rows.lowerBound &+ i, _rowBlock, partLength &* channels) }
    }
    let rest = rows.lowerBound &+ partLength &* parts
    if rest < rows.upperBound { body(rest, rows.upperBound &- rest, channels) }
}

/// Adds Σ(x − k[c]) and Σ(x − k[c])² of channels-last rows into `sums` and
/// `squares` (`channels` Doubles each). Rows go in blocks of `_rowBlock`: each
/// run of channels loads its shifts and partial sums once per block and keeps
/// them in registers over the block's rows (a store and reload per row made
/// this pass twice as slow as reading the data).
@inline(__always)
private func _addShiftedRowSums(_ x: UnsafePointer<Float>, rows: Range<Int>, channels: Int,
                                shift k: UnsafePointer<Double>,
                                sums: UnsafeMutablePointer<Double>, squares: UnsafeMutablePointer<Double>) {
    /// A row that is one run: its sums stay in registers over the whole range.
    @inline(__always) func wholeRange<V: _ChannelRun>(_: V.Type) {
        let kv = V.Sums(k)
        var s = V.Sums(sums), q = V.Sums(squares)
        for row in rows {
            let d = V(x + row &* V.width).inDouble - kv
            s = s + d
            q = q.addingSquare(d)
        }
        s.store(to: sums)
        q.store(to: squares)
    }
    switch channels {
    case 64: return wholeRange(_Floats64.self)
    case 32: return wholeRange(_Floats32.self)
    case 16: return wholeRange(SIMD16<Float>.self)
    default: break
    }
    _forEachRowBlock(rows, channels: channels) { row, count, stride in
        let line = x + row &* channels
        @inline(__always) func runs<V: _ChannelRun>(_: V.Type, from c: inout Int) {
            while c &+ V.width <= channels {
                let kv = V.Sums(k + c)
                var s = V.Sums(sums + c), q = V.Sums(squares + c)
                for r in 0..<count {
                    let d = V(line + (r &* stride &+ c)).inDouble - kv
                    s = s + d
                    q = q.addingSquare(d)
                }
                s.store(to: sums + c)
                q.store(to: squares + c)
                c &+= V.width
            }
        }
        var c = 0
        runs(_Floats64.self, from: &c)
        runs(SIMD16<Float>.self, from: &c)
        runs(Float.self, from: &c)
    }
}

/// Statistics of x (outer, channels, inner) in one sweep through memory, split
/// across `chunks` ranges of the outer index, each with its own partial sums
/// (Double), added up afterwards. Shifted by each channel's first value, and
/// swept again around the means when one was far from its mean (see the file
/// header).
private func _sweepStatistics(_ x: UnsafePointer<Float>, outer: Int, channels: Int, inner: Int, chunks: Int,
                              mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>) {
    // Two temporary buffers rather than one: each stays within the size Swift
    // puts on the stack (1 KiB), so 64 channels on one thread never touch the heap.
    withUnsafeTemporaryAllocation(of: Double.self, capacity: channels) { shifts in
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * chunks * channels) { sums in
            _sweepStatistics(x, outer: outer, channels: channels, inner: inner, chunks: chunks, mean: mean,
                             variance: variance, k: shifts.baseAddress!, partials: sums.baseAddress!)
        }
    }
}

private func _sweepStatistics(_ x: UnsafePointer<Float>, outer: Int, channels: Int, inner: Int, chunks: Int,
                              mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>,
                              k: UnsafeMutablePointer<Double>, partials: UnsafeMutablePointer<Double>) {
    let m = Double(outer * inner)
    for c in 0..<channels { k[c] = Double(x[c * inner]) }
    for attempt in 0..<2 {
        partials.update(repeating: 0, count: 2 * chunks * channels)
        Threading.parallelFor(chunks: chunks) { chunk in
            let sums = partials + 2 * chunk * channels, squares = sums + channels
            if inner == 1 {
                _addShiftedRowSums(x, rows: _part(chunk, of: chunks, count: outer), channels: channels, shift: k,
                                   sums: sums, squares: squares)
                return
            }
            _addShiftedLineSums(x, lines: _part(chunk, of: chunks, count: outer * channels), channels: channels,
                                inner: inner, shift: k, sums: sums, squares: squares)
        }
        var wellCentred = true
        for c in 0..<channels {
            var s = 0.0, q = 0.0
            for chunk in 0..<chunks {
                s += partials[2 * chunk * channels + c]
                q += partials[(2 * chunk + 1) * channels + c]
            }
            let offset = s / m
            mean[c] = k[c] + offset
            variance[c] = max(q / m - offset * offset, 0)
            if offset * offset > _BatchNormTuning.shiftTolerance * (q / m - offset * offset) { wellCentred = false }
        }
        if wellCentred || attempt == 1 { break }
        for c in 0..<channels { k[c] = Double(Float(mean[c])) }
    }
}

// MARK: - Statistics

/// Per-channel batch mean and biased variance of x (outer, channels, inner).
///
/// Exact to Double rounding for any data: shifted sums in Double, repeated
/// around the mean when the first value was far from it (see the file header;
/// the one-pass E[x²] − E[x]² formula would lose every digit at mean 1e4,
/// std 1e-3). The variance is clamped at 0.
///
/// - Parameters:
///   - mean, variance: `channels` values each, written.
///   - threads: how many chunks to split the work into; nil chooses from
///     `Threading.count` and the size.
public func batchNormStatistics(
    _ x: UnsafeBufferPointer<Float>, outer: Int, channels: Int, inner: Int,
    mean: UnsafeMutableBufferPointer<Double>, variance: UnsafeMutableBufferPointer<Double>,
    threads: Int? = nil
) {
    precondition(x.count == outer * channels * inner && mean.count == channels && variance.count == channels,
                 "batchNormStatistics: buffers (\(x.count), \(mean.count), \(variance.count)) do not fit (\(outer), \(channels), \(inner))")
    guard channels > 0 else { return }
    guard x.count > 0 else {
        mean.update(repeating: .nan); variance.update(repeating: .nan)
        return
    }
    let px = x.baseAddress!, pm = mean.baseAddress!, pv = variance.baseAddress!
    let chunks = _chunkCount(work: x.count, units: _splitUnits(outer: outer, channels: channels, inner: inner),
                             threads: threads)
    _sweepStatistics(px, outer: outer, channels: channels, inner: inner, chunks: chunks, mean: pm, variance: pv)
}

// MARK: - Apply (inference) and the fused training forward

/// y = (x − centre)·scale + shift over `count` floats with one channel's constants.
@inline(__always)
private func _applyLine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                        center: Float, scale: Float, shift: Float) {
    let cv = SIMD16<Float>(repeating: center), av = SIMD16<Float>(repeating: scale), bv = SIMD16<Float>(repeating: shift)
    var i = 0
    while i &+ 16 <= count {
        _store16(_fusedMultiplyAdd(bv, _load16(x + i) - cv, av), y + i)
        i &+= 16
    }
    while i < count {
        y[i] = _fusedMultiplyAdd(shift, x[i] - center, scale)
        i &+= 1
    }
}

/// y = (x − centre[c])·scale[c] + shift[c] over channels-last rows, vectorized
/// across channels; each run of channels keeps its constants in registers
/// over a block of `_rowBlock` rows.
@inline(__always)
private func _applyRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>, channels: Int,
                        center: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>) {
    /// A row that is one run: its constants stay in registers over the whole range.
    @inline(__always) func wholeRange<V: _ChannelRun>(_: V.Type) {
        let cv = V(center), av = V(scale), bv = V(shift)
        for row in rows {
            let i = row &* V.width
            bv.adding(V(x + i) - cv, times: av).store(to: y + i)
        }
    }
    switch channels {
    case 64: return wholeRange(_Floats64.self)
    case 32: return wholeRange(_Floats32.self)
    case 16: return wholeRange(SIMD16<Float>.self)
    default: break
    }
    _forEachRowBlock(rows, channels: channels) { row, count, stride in
        let line = x + row &* channels, out = y + row &* channels
        @inline(__always) func runs<V: _ChannelRun>(_: V.Type, from c: inout Int) {
            while c &+ V.width <= channels {
                let cv = V(center + c), av = V(scale + c), bv = V(shift + c)
                for r in 0..<count {
                    let i = r &* stride &+ c
                    bv.adding(V(line + i) - cv, times: av).store(to: out + i)
                }
                c &+= V.width
            }
        }
        var c = 0
        runs(_Floats64.self, from: &c)
        runs(SIMD16<Float>.self, from: &c)
        runs(Float.self, from: &c)
    }
}

/// y = (x − center[c]) · scale[c] + shift[c] over (outer, channels, inner):
/// every batch-norm forward, once the per-channel constants are folded
/// (center = μ rounded to Float, scale = γ·invstd, shift = β − (μ − center)·scale),
/// is one subtraction and one FMA per element.
///
/// Why not y = x·scale + (β − μ·scale), one FMA: when |μ| ≫ σ both terms are
/// huge (|μ|·invstd) and their Float sum cancels the deviation; at μ = 1e4,
/// σ = 1e-3 the output is off by O(1). x − center is exact for x near the
/// mean (Sterbenz), so the deviation survives.
///
/// - Parameters:
///   - center: `channels` values subtracted first; nil for 0 (plain x·scale + shift).
///   - threads: how many chunks to split the work into; nil chooses from
///     `Threading.count` and the size.
public func batchNormApply(
    _ x: UnsafeBufferPointer<Float>, outer: Int, channels: Int, inner: Int,
    scale: UnsafeBufferPointer<Float>, shift: UnsafeBufferPointer<Float>,
    center: UnsafeBufferPointer<Float>? = nil,
    output y: UnsafeMutableBufferPointer<Float>,
    threads: Int? = nil
) {
    precondition(x.count == outer * channels * inner && y.count == x.count && scale.count == channels && shift.count == channels
                 && (center?.count ?? channels) == channels,
                 "batchNormApply: buffers do not fit (\(outer), \(channels), \(inner))")
    guard x.count > 0 else { return }
    let px = x.baseAddress!, py = y.baseAddress!, ps = scale.baseAddress!, pb = shift.baseAddress!
    if inner == 1 {
        let chunks = _chunkCount(work: x.count, units: outer, threads: threads)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: center == nil ? channels : 0) { zeros in
            let pc: UnsafePointer<Float>
            if let center { pc = center.baseAddress! } else {
                zeros.initialize(repeating: 0)
                pc = UnsafePointer(zeros.baseAddress!)
            }
            Threading.parallelFor(chunks: chunks) { chunk in
                _applyRows(px, py, rows: _part(chunk, of: chunks, count: outer), channels: channels,
                           center: pc, scale: ps, shift: pb)
            }
        }
    } else {
        // Rows of `inner` values in memory order; row r belongs to channel r % channels.
        let rows = outer * channels
        let chunks = _chunkCount(work: x.count, units: rows, threads: threads)
        let pc = center?.baseAddress
        Threading.parallelFor(chunks: chunks) { chunk in
            for row in _part(chunk, of: chunks, count: rows) {
                let c = row % channels
                _applyLine(px + row * inner, py + row * inner, count: inner,
                           center: pc?[c] ?? 0, scale: ps[c], shift: pb[c])
            }
        }
    }
}

/// The per-channel constants of y = (x − center)·scale + shift (see `batchNormApply`).
public struct BatchNormChannelConstants: Sendable, Equatable {
    public var center: Float, scale: Float, shift: Float
    public init(center: Float, scale: Float, shift: Float) {
        self.center = center
        self.scale = scale
        self.shift = shift
    }
}

/// The training forward in one call: the batch statistics (as
/// `batchNormStatistics`) and y = (x − center)·scale + shift with the constants
/// `fold(channel, mean, variance)` returns for each channel.
///
/// x is read twice (every output needs the statistics of the whole batch) and
/// y written once: at best 1.5× the memory traffic of `batchNormApply`.
/// Normalizing each channel right after its own statistics, while its values
/// are in cache, would read x once, but walking an NCHW tensor channel by
/// channel measured 2.5–4× slower than the two sweeps in memory order.
/// `fold` may run on several threads at once (for different channels) and
/// must not touch shared mutable state.
///
/// - Parameters:
///   - mean, variance: `channels` values each, written (biased variance).
///   - threads: how many chunks to split the work into; nil chooses.
public func batchNormTrainingForward(
    _ x: UnsafeBufferPointer<Float>, outer: Int, channels: Int, inner: Int,
    mean: UnsafeMutableBufferPointer<Double>, variance: UnsafeMutableBufferPointer<Double>,
    output y: UnsafeMutableBufferPointer<Float>,
    threads: Int? = nil,
    fold: (_ channel: Int, _ mean: Double, _ variance: Double) -> BatchNormChannelConstants
) {
    precondition(x.count == outer * channels * inner && y.count == x.count && mean.count == channels
                 && variance.count == channels,
                 "batchNormTrainingForward: buffers (\(x.count), \(y.count), \(mean.count), \(variance.count)) do not fit (\(outer), \(channels), \(inner))")
    guard channels > 0 else { return }
    guard x.count > 0 else {
        mean.update(repeating: .nan); variance.update(repeating: .nan)
        return
    }
    let px = x.baseAddress!, py = y.baseAddress!, pm = mean.baseAddress!, pv = variance.baseAddress!
    let chunks = _chunkCount(work: x.count, units: _splitUnits(outer: outer, channels: channels, inner: inner),
                             threads: threads)
    _sweepStatistics(px, outer: outer, channels: channels, inner: inner, chunks: chunks, mean: pm, variance: pv)
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * channels) { constants in
        let center = constants.baseAddress!, scale = center + channels, shift = scale + channels
        for c in 0..<channels {
            let k = fold(c, pm[c], pv[c])
            (center[c], scale[c], shift[c]) = (k.center, k.scale, k.shift)
        }
        Threading.parallelFor(chunks: chunks) { chunk in
            if inner == 1 {
                _applyRows(px, py, rows: _part(chunk, of: chunks, count: outer), channels: channels, center: center,
                           scale: scale, shift: shift)
                return
            }
            for line in _part(chunk, of: chunks, count: outer * channels) {
                let c = line % channels
                _applyLine(px + line * inner, py + line * inner, count: inner, center: center[c], scale: scale[c],
                           shift: shift[c])
            }
        }
    }
}

// MARK: - Backward
//
// Two sweeps in memory order: the sums (x and dy read), then dx (x and dy
// read again, dx written). What did not beat them on the 2-core Zen 5 (A/B in
// one process, medians and minima of 30–40 calls, load 3–8; Nov 2026):
// - Fusing by channel block (a channels-first block's sums over every outer
//   index, then its dx while its x and dy should still be in L3): 0.9–1.8×
//   the time at (64, 64, 56, 56), slower in most runs, and 1.1–3× at
//   (128, 256, 14, 14), blocks of
//   1–16 MB with 1, 2, 4 or 8 outer indices read side by side. Every outer
//   index starts a new stream for the prefetchers; the block's sums alone,
//   with no reuse to gain, took 1.1–1.8× and 1.3–6× the sequential sweep.
//   Software prefetch of the next outer index's lines (a C shim over
//   `__builtin_prefetch`) brought those sums back to 1.0–1.1×, but the whole
//   backward still took 0.87–1.2× (blocks of 3–12 MB) and 1.07–1.4× with
//   blocks small enough for L2 (0.45–0.85 MB at 14×14): the reuse did not pay
//   for the extra streams.
// - Running dx first over the rows or lines its chunk read last (still in
//   cache, in principle): 0.88–1.08×, no consistent gain.
// - Non-temporal stores for dx (a C model of the dx sweep): no gain.
// - Reading each chunk's lines as two streams, as the statistics do: the sums
//   1.01–1.07×, the whole backward 1.01–1.04× at (64, 64, 56, 56) and
//   1.14–1.24× at (128, 256, 14, 14) (load 1).
// - Channels-last sums with 4-row partial products in Float: the sums pass
//   0.90–0.94× at 256 channels, the whole backward unchanged, so the Double
//   products stay.

/// Σdy and Σdy·(x − mean) in Double over one channels-first channel.
@inline(__always)
private func _gradientSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int, rowStride: Int,
                           length: Int, mean: Float) -> (sumDy: Double, sumDyCentered: Double) {
    let mv = SIMD16<Float>(repeating: mean)
    var s0 = SIMD8<Double>(), s1 = SIMD8<Double>(), p0 = SIMD8<Double>(), p1 = SIMD8<Double>()
    var sum = 0.0, products = 0.0
    for row in 0..<rows {
        let xl = x + row * rowStride, gl = dy + row * rowStride
        var i = 0
        while i + 16 <= length {
            let g = _load16(gl + i)
            let product = g * (_load16(xl + i) - mv)
            s0 += SIMD8<Double>(g.lowHalf); s1 += SIMD8<Double>(g.highHalf)
            p0 += SIMD8<Double>(product.lowHalf); p1 += SIMD8<Double>(product.highHalf)
            i += 16
        }
        while i < length {
            sum += Double(gl[i]); products += Double(gl[i] * (xl[i] - mean))
            i += 1
        }
    }
    return (sum + (s0 + s1).sum(), products + (p0 + p1).sum())
}

/// dx = dy·a + (x − mean)·b + k over `count` floats.
@inline(__always)
private func _inputGradientLine(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                count: Int, mean: Float, a: Float, b: Float, k: Float) {
    let mv = SIMD16<Float>(repeating: mean), av = SIMD16<Float>(repeating: a)
    let bv = SIMD16<Float>(repeating: b), kv = SIMD16<Float>(repeating: k)
    var i = 0
    while i + 16 <= count {
        _store16(_fusedMultiplyAdd(_fusedMultiplyAdd(kv, _load16(x + i) - mv, bv), _load16(dy + i), av), dx + i)
        i &+= 16
    }
    while i < count {
        dx[i] = _fusedMultiplyAdd(_fusedMultiplyAdd(k, x[i] - mean, b), dy[i], a)
        i &+= 1
    }
}

/// Adds Σdy and Σdy·(x − mean[c]) of channels-last rows into `sums`, `products`;
/// each run of channels keeps its partial sums in registers over a block of
/// `_rowBlock` rows.
@inline(__always)
private func _addGradientRowSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Range<Int>, channels: Int,
                                 mean: UnsafePointer<Float>,
                                 sums: UnsafeMutablePointer<Double>, products: UnsafeMutablePointer<Double>) {
    /// A row that is one run: its sums stay in registers over the whole range.
    @inline(__always) func wholeRange<V: _ChannelRun>(_: V.Type) {
        let mv = V(mean)
        var s = V.Sums(sums), p = V.Sums(products)
        for row in rows {
            let i = row &* V.width
            let g = V(dy + i)
            s = s + g.inDouble
            p = p + (g * (V(x + i) - mv)).inDouble
        }
        s.store(to: sums)
        p.store(to: products)
    }
    switch channels {
    case 64: return wholeRange(_Floats64.self)
    case 32: return wholeRange(_Floats32.self)
    case 16: return wholeRange(SIMD16<Float>.self)
    default: break
    }
    _forEachRowBlock(rows, channels: channels) { row, count, stride in
        let xl = x + row &* channels, gl = dy + row &* channels
        @inline(__always) func runs<V: _ChannelRun>(_: V.Type, from c: inout Int) {
            while c &+ V.width <= channels {
                let mv = V(mean + c)
                var s = V.Sums(sums + c), p = V.Sums(products + c)
                for r in 0..<count {
                    let i = r &* stride &+ c
                    let g = V(gl + i)
                    s = s + g.inDouble
                    p = p + (g * (V(xl + i) - mv)).inDouble
                }
                s.store(to: sums + c)
                p.store(to: products + c)
                c &+= V.width
            }
        }
        // 32-channel runs: 0.76–0.88× the time of 16 at 64–512 channels; 64 with
        // their 16 Double accumulators measured 2.5× slower at 96–512 channels.
        var c = 0
        runs(_Floats32.self, from: &c)
        runs(SIMD16<Float>.self, from: &c)
        runs(Float.self, from: &c)
    }
}

/// dx = dy·a[c] + (x − mean[c])·b[c] + k[c] over channels-last rows; each run
/// of channels keeps its coefficients in registers over a block of `_rowBlock` rows.
@inline(__always)
private func _inputGradientRows(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                rows: Range<Int>, channels: Int, mean: UnsafePointer<Float>,
                                a: UnsafePointer<Float>, b: UnsafePointer<Float>, k: UnsafePointer<Float>) {
    /// A row that is one run: its coefficients stay in registers over the whole range.
    @inline(__always) func wholeRange<V: _ChannelRun>(_: V.Type) {
        let mv = V(mean), av = V(a), bv = V(b), kv = V(k)
        for row in rows {
            let i = row &* V.width
            kv.adding(V(x + i) - mv, times: bv).adding(V(dy + i), times: av).store(to: dx + i)
        }
    }
    switch channels {
    case 64: return wholeRange(_Floats64.self)
    case 32: return wholeRange(_Floats32.self)
    case 16: return wholeRange(SIMD16<Float>.self)
    default: break
    }
    _forEachRowBlock(rows, channels: channels, parts: 2) { row, count, stride in
        let xl = x + row &* channels, gl = dy + row &* channels, out = dx + row &* channels
        @inline(__always) func runs<V: _ChannelRun>(_: V.Type, from c: inout Int) {
            while c &+ V.width <= channels {
                let mv = V(mean + c), av = V(a + c), bv = V(b + c), kv = V(k + c)
                for r in 0..<count {
                    let i = r &* stride &+ c
                    kv.adding(V(xl + i) - mv, times: bv).adding(V(gl + i), times: av).store(to: out + i)
                }
                c &+= V.width
            }
        }
        var c = 0
        runs(_Floats64.self, from: &c)
        runs(SIMD16<Float>.self, from: &c)
        runs(Float.self, from: &c)
    }
}

/// Per-channel coefficients of dx = dy·A + (x − mean)·B + C from the two sums.
@inline(__always)
private func _inputGradientCoefficients(sumDy: Double, sumDyCentered: Double, m: Double, gamma: Float, invstd: Float,
                                        residual: Float, statisticsFromBatch: Bool) -> (a: Float, b: Float, k: Float) {
    let g = Double(gamma), s = Double(invstd)
    guard statisticsFromBatch else { return (Float(g * s), 0, 0) }
    let bc = -g * s * s * s * sumDyCentered / m
    return (Float(g * s), Float(bc), Float(-g * s * sumDy / m - bc * Double(residual)))
}

/// The fused batch-norm pullback.
///
/// With x̂ = (x − μ)·invstd and Σ over a channel's m values:
/// dβ = Σdy, dγ = Σ(dy·x̂), and
/// - when μ, invstd are the batch's statistics (training):
///   dx = γ·invstd/m · (m·dy − Σdy − x̂·Σ(dy·x̂));
/// - when they are constants (running statistics, inference): dx = dy·γ·invstd.
/// One reduction pass computes both sums (in Double); the second pass writes
/// dx = dy·A + (x − mean)·B + C with per-channel A, B, C. Centring x before
/// scaling matters when |μ| ≫ σ: x·B and μ·B would be huge and cancel in Float.
///
/// - Parameters:
///   - mean, inverseStandardDeviation: the statistics the forward used (`channels`).
///   - meanResidual: μ − mean per channel when `mean` is the batch mean rounded
///     to Float (the part rounding lost, which matters when |μ| ≫ σ); nil for 0.
///   - gamma: the scale, or nil for 1 (affine off).
///   - inputGradient: written when non-nil; gammaGradient, betaGradient likewise.
///     It may be `outputGradient`'s own memory (dx written over dy): every dy
///     is read before the dx in its place is written, and writing back lines
///     just read spares the dx sweep a third stream (0.77–0.86× the time at
///     (64, 64, 56, 56) and (128, 256, 14, 14), NCHW and channels-last).
///   - threads: how many chunks to split the work into; nil chooses.
public func batchNormBackward(
    input x: UnsafeBufferPointer<Float>, outputGradient dy: UnsafeBufferPointer<Float>,
    outer: Int, channels: Int, inner: Int,
    mean: UnsafeBufferPointer<Float>, inverseStandardDeviation invstd: UnsafeBufferPointer<Float>,
    gamma: UnsafeBufferPointer<Float>?, statisticsFromBatch: Bool,
    meanResidual: UnsafeBufferPointer<Float>? = nil,
    inputGradient dx: UnsafeMutableBufferPointer<Float>?,
    gammaGradient: UnsafeMutableBufferPointer<Float>?, betaGradient: UnsafeMutableBufferPointer<Float>?,
    threads: Int? = nil
) {
    precondition(x.count == outer * channels * inner && dy.count == x.count && mean.count == channels
                 && invstd.count == channels && (gamma?.count ?? channels) == channels
                 && (meanResidual?.count ?? channels) == channels && (dx?.count ?? x.count) == x.count
                 && (gammaGradient?.count ?? channels) == channels && (betaGradient?.count ?? channels) == channels,
                 "batchNormBackward: buffers do not fit (\(outer), \(channels), \(inner))")
    guard channels > 0 else { return }
    let m = Double(outer * inner)
    // Empty buffers have no base address; a dummy one is never read (count 0).
    let px = x.baseAddress ?? UnsafePointer(bitPattern: 64)!, pdy = dy.baseAddress ?? px
    let pmean = mean.baseAddress!, pinvstd = invstd.baseAddress!
    let pgamma = gamma?.baseAddress, presidual = meanResidual?.baseAddress
    let pdx = dx?.baseAddress, pdGamma = gammaGradient?.baseAddress, pdBeta = betaGradient?.baseAddress
    @inline(__always) func finish(_ c: Int, sumDy: Double, sumDyCentered rawCentered: Double) -> (a: Float, b: Float, k: Float) {
        // Σdy·(x − μ) = Σdy·(x − mean) − (μ − mean)·Σdy.
        let sumDyCentered = rawCentered - Double(presidual?[c] ?? 0) * sumDy
        pdBeta?[c] = Float(sumDy)
        pdGamma?[c] = Float(sumDyCentered * Double(pinvstd[c]))
        return _inputGradientCoefficients(sumDy: sumDy, sumDyCentered: sumDyCentered, m: m, gamma: pgamma?[c] ?? 1,
                                          invstd: pinvstd[c], residual: presidual?[c] ?? 0,
                                          statisticsFromBatch: statisticsFromBatch)
    }
    let chunks = _chunkCount(work: x.count, units: max(_splitUnits(outer: outer, channels: channels, inner: inner), 1),
                             threads: threads)
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * chunks * channels) { scratch in
        let partials = scratch.baseAddress!
        partials.update(repeating: 0, count: 2 * chunks * channels)
        Threading.parallelFor(chunks: chunks) { chunk in
            let sums = partials + 2 * chunk * channels, products = sums + channels
            if inner == 1 {
                _addGradientRowSums(px, pdy, rows: _part(chunk, of: chunks, count: outer), channels: channels,
                                    mean: pmean, sums: sums, products: products)
                return
            }
            for line in _part(chunk, of: chunks, count: outer * channels) {
                let c = line % channels, start = line * inner
                let (s, p) = _gradientSums(px + start, pdy + start, rows: 1, rowStride: 0, length: inner, mean: pmean[c])
                sums[c] += s
                products[c] += p
            }
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * channels) { coefficients in
            let a = coefficients.baseAddress!, b = a + channels, k = b + channels
            for c in 0..<channels {
                var s = 0.0, p = 0.0
                for chunk in 0..<chunks {
                    s += partials[2 * chunk * channels + c]
                    p += partials[(2 * chunk + 1) * channels + c]
                }
                (a[c], b[c], k[c]) = finish(c, sumDy: s, sumDyCentered: p)
            }
            guard let pdx else { return }
            Threading.parallelFor(chunks: chunks) { chunk in
                if inner == 1 {
                    _inputGradientRows(px, pdy, pdx, rows: _part(chunk, of: chunks, count: outer), channels: channels,
                                       mean: pmean, a: a, b: b, k: k)
                    return
                }
                for line in _part(chunk, of: chunks, count: outer * channels) {
                    let c = line % channels, start = line * inner
                    _inputGradientLine(px + start, pdy + start, pdx + start, count: inner, mean: pmean[c],
                                       a: a[c], b: b[c], k: k[c])
                }
            }
        }
    }
}
