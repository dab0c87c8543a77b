/// Which code computes an `sgemm`.
public enum SGEMMImplementation: Sendable {
    /// The faster of the two for the size, as measured: the system OpenBLAS
    /// (when installed, with kernels as wide as the CPU's vectors: `OpenBLAS.isPreferred`)
    /// on one thread for products below 64 MFLOP, else `.native`.
    case automatic
    /// NormKit's own packed kernel (below).
    case native
    /// The system OpenBLAS; falls back to `.native` where it is absent.
    case openBLAS
}

/// Single-precision general matrix multiply over raw buffers:
/// `C = alpha · op(A) · op(B) + beta · C`, all row-major.
///
/// Shape contract: op(A) is (m, k), op(B) is (k, n), C is (m, n); `lda`, `ldb`,
/// `ldc` are the row strides of A, B and C as stored (so a transposed A of
/// op-shape (m, k) is stored (k, m) with `lda ≥ m`).
///
/// By default small products (below 64 MFLOP, such as a dense layer's on a
/// batch) run in the system OpenBLAS on one thread when `libopenblas.so.0` is
/// installed; larger ones, or every one with `implementation: .native`, or all
/// where OpenBLAS is absent, in NormKit's own kernel (numbers in
/// Benchmarks/README.md). The native kernel is the classic Goto/BLIS
/// layering, where op(B) is packed per `kBlock` rows into panels `panelWidth`
/// columns wide, op(A) per `mBlock` rows into panels `panelHeight` rows tall, and
/// a register-tiled micro-kernel (6 × 32: twelve 16-lane accumulators, one
/// AVX-512 register each) walks the packed panels, so every load in the hot
/// loop is contiguous. Large products split the columns of C across
/// `Threading.count` threads. OpenBLAS asked for explicitly gets `Threading.count`
/// threads above 64 MFLOP.
public func sgemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    implementation: SGEMMImplementation = .automatic
) {
    precondition(m >= 0 && n >= 0 && k >= 0, "sgemm with negative size m=\(m) n=\(n) k=\(k)")
    if m == 0 || n == 0 { return }
    // Which implementation, by measurement (Benchmarks/README.md): OpenBLAS on one
    // thread wins below `_GEMMTile.openBLASFlops` (the seed MLP's 32×784×64 and
    // 256×784×64: 1.4–2.8× the native kernel, no allocation); above it the native
    // kernel on `Threading.count` threads was faster than OpenBLAS's threads,
    // whose pool waits for work by spinning on sched_yield and so loses to
    // every other busy process on a 2-core machine.
    let flops = 2 * m * n * k
    let useOpenBLAS = switch implementation {
    case .native: false
    case .openBLAS: true
    case .automatic: flops < _GEMMTile.openBLASFlops && OpenBLAS.isPreferred
    }
    if useOpenBLAS && k > 0,
       OpenBLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
                      threads: flops < _GEMMTile.openBLASFlops ? 1 : Threading.count) {
        return
    }
    _scaleC(m: m, n: n, beta: beta, c: c, ldc: ldc)
    if k == 0 || alpha == 0 { return }
    let operands = _GEMMOperands(transposeA: transposeA, transposeB: transposeB, a: a, lda: lda, b: b, ldb: ldb)
    let panels = (n + _GEMMTile.panelWidth - 1) / _GEMMTile.panelWidth
    let threads = flops < 1 << 21 ? 1 : min(Threading.count, panels)
    if threads <= 1 {
        _gemmColumns(operands, m: m, columns: 0..<n, k: k, alpha: alpha, c: c, ldc: ldc)
        return
    }
    nonisolated(unsafe) let cShared = c
    Threading.parallelFor(chunks: threads) { chunk in
        // Whole panels per thread, so no two threads touch one C tile.
        let first = panels * chunk / threads * _GEMMTile.panelWidth
        let last = min(n, panels * (chunk + 1) / threads * _GEMMTile.panelWidth)
        if first < last {
            _gemmColumns(operands, m: m, columns: first..<last, k: k, alpha: alpha, c: cShared, ldc: ldc)
        }
    }
}

@usableFromInline
enum _GEMMTile {
    static let panelHeight = 6      // rows of C per micro-kernel call
    static let panelWidth = 32      // columns of C per micro-kernel call (two SIMD16)
    static let kBlock = 256         // packed depth: a B panel of 256×32 floats is 32 KiB (L1)
    static let mBlock = 96          // rows of A packed at once: 96×256 floats = 96 KiB (L2)
    /// Products smaller than this run in OpenBLAS on one thread by default (see `sgemm`).
    static let openBLASFlops = 1 << 26
}

struct _GEMMOperands: @unchecked Sendable {
    let transposeA: Bool, transposeB: Bool
    let a: UnsafePointer<Float>, lda: Int
    let b: UnsafePointer<Float>, ldb: Int

    @inline(__always) func elementA(_ row: Int, _ depth: Int) -> Float {
        transposeA ? a[depth * lda + row] : a[row * lda + depth]
    }
}

private func _scaleC(m: Int, n: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if beta == 1 { return }
    for row in 0..<m {
        let line = c + row * ldc
        if beta == 0 {
            line.update(repeating: 0, count: n)
        } else {
            for column in 0..<n { line[column] *= beta }
        }
    }
}

/// Serial GEMM on the columns `columns` of C.
private func _gemmColumns(_ op: _GEMMOperands, m: Int, columns: Range<Int>, k: Int, alpha: Float,
                          c: UnsafeMutablePointer<Float>, ldc: Int) {
    let width = columns.count
    let panelCount = (width + _GEMMTile.panelWidth - 1) / _GEMMTile.panelWidth
    let kBlock = min(k, _GEMMTile.kBlock)
    let mBlock = min(_GEMMTile.mBlock, (m + _GEMMTile.panelHeight - 1) / _GEMMTile.panelHeight * _GEMMTile.panelHeight)
    let packedB = UnsafeMutableRawPointer.allocate(
        byteCount: panelCount * _GEMMTile.panelWidth * kBlock * 4, alignment: 64).bindMemory(to: Float.self, capacity: panelCount * _GEMMTile.panelWidth * kBlock)
    let packedA = UnsafeMutableRawPointer.allocate(
        byteCount: mBlock * kBlock * 4, alignment: 64).bindMemory(to: Float.self, capacity: mBlock * kBlock)
    defer {
        UnsafeMutableRawPointer(packedB).deallocate()
        UnsafeMutableRawPointer(packedA).deallocate()
    }

    var depthStart = 0
    while depthStart < k {
        let depth = min(kBlock, k - depthStart)
        _packB(op, depthStart: depthStart, depth: depth, columns: columns, into: packedB)
        var rowStart = 0
        while rowStart < m {
            let rows = min(mBlock, m - rowStart)
            _packA(op, rowStart: rowStart, rows: rows, depthStart: depthStart, depth: depth, into: packedA)
            for panel in 0..<panelCount {
                let columnStart = panel * _GEMMTile.panelWidth
                let panelColumns = min(_GEMMTile.panelWidth, width - columnStart)
                let bPanel = packedB + panel * _GEMMTile.panelWidth * depth
                var tileRow = 0
                while tileRow < rows {
                    let tileRows = min(_GEMMTile.panelHeight, rows - tileRow)
                    _microKernel(
                        depth: depth, aPanel: packedA + tileRow * depth, bPanel: bPanel, alpha: alpha,
                        c: c + (rowStart + tileRow) * ldc + columns.lowerBound + columnStart, ldc: ldc,
                        rows: tileRows, columns: panelColumns)
                    tileRow += _GEMMTile.panelHeight
                }
            }
            rowStart += rows
        }
        depthStart += depth
    }
}

/// Packs op(B)[depthStart..<+depth, columns] as panels of 32 columns:
/// panel p holds, for each depth d, 32 consecutive values (zero-padded).
private func _packB(_ op: _GEMMOperands, depthStart: Int, depth: Int, columns: Range<Int>,
                    into packed: UnsafeMutablePointer<Float>) {
    let width = columns.count
    let panelWidth = _GEMMTile.panelWidth
    var panelStart = 0
    var out = packed
    while panelStart < width {
        let panelColumns = min(panelWidth, width - panelStart)
        let firstColumn = columns.lowerBound + panelStart
        for d in 0..<depth {
            let p = depthStart + d
            if op.transposeB {
                for j in 0..<panelColumns { out[j] = op.b[(firstColumn + j) * op.ldb + p] }
            } else {
                (out).update(from: op.b + p * op.ldb + firstColumn, count: panelColumns)
            }
            if panelColumns < panelWidth {
                (out + panelColumns).update(repeating: 0, count: panelWidth - panelColumns)
            }
            out += panelWidth
        }
        panelStart += panelWidth
    }
}

/// Packs op(A)[rowStart..<+rows, depthStart..<+depth] as panels of 6 rows:
/// panel q holds, for each depth d, 6 consecutive values (zero-padded).
private func _packA(_ op: _GEMMOperands, rowStart: Int, rows: Int, depthStart: Int, depth: Int,
                    into packed: UnsafeMutablePointer<Float>) {
    let height = _GEMMTile.panelHeight
    var out = packed
    var panelRow = 0
    while panelRow < rows {
        let panelRows = min(height, rows - panelRow)
        for d in 0..<depth {
            for r in 0..<height {
                out[r] = r < panelRows ? op.elementA(rowStart + panelRow + r, depthStart + d) : 0
            }
            out += height
        }
        panelRow += height
    }
}

/// C[0..<rows, 0..<columns] += alpha · Apanel · Bpanel over `depth`.
/// The twelve accumulators live in named locals so they stay in registers.
@inline(__always)
private func _microKernel(depth: Int, aPanel: UnsafePointer<Float>, bPanel: UnsafePointer<Float>, alpha: Float,
                          c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int) {
    var c00 = SIMD16<Float>(), c01 = SIMD16<Float>()
    var c10 = SIMD16<Float>(), c11 = SIMD16<Float>()
    var c20 = SIMD16<Float>(), c21 = SIMD16<Float>()
    var c30 = SIMD16<Float>(), c31 = SIMD16<Float>()
    var c40 = SIMD16<Float>(), c41 = SIMD16<Float>()
    var c50 = SIMD16<Float>(), c51 = SIMD16<Float>()
    let bRaw = UnsafeRawPointer(bPanel)
    for d in 0..<depth {
        let b0 = bRaw.loadUnaligned(fromByteOffset: d * 128, as: SIMD16<Float>.self)
        let b1 = bRaw.loadUnaligned(fromByteOffset: d * 128 + 64, as: SIMD16<Float>.self)
        let a = aPanel + d * 6
        let a0 = SIMD16<Float>(repeating: a[0]), a1 = SIMD16<Float>(repeating: a[1])
        c00 = _fusedMultiplyAdd(c00, a0, b0); c01 = _fusedMultiplyAdd(c01, a0, b1)
        c10 = _fusedMultiplyAdd(c10, a1, b0); c11 = _fusedMultiplyAdd(c11, a1, b1)
        let a2 = SIMD16<Float>(repeating: a[2]), a3 = SIMD16<Float>(repeating: a[3])
        c20 = _fusedMultiplyAdd(c20, a2, b0); c21 = _fusedMultiplyAdd(c21, a2, b1)
        c30 = _fusedMultiplyAdd(c30, a3, b0); c31 = _fusedMultiplyAdd(c31, a3, b1)
        let a4 = SIMD16<Float>(repeating: a[4]), a5 = SIMD16<Float>(repeating: a[5])
        c40 = _fusedMultiplyAdd(c40, a4, b0); c41 = _fusedMultiplyAdd(c41, a4, b1)
        c50 = _fusedMultiplyAdd(c50, a5, b0); c51 = _fusedMultiplyAdd(c51, a5, b1)
    }
    let scale = SIMD16<Float>(repeating: alpha)
    @inline(__always) func store(_ row: Int, _ left: SIMD16<Float>, _ right: SIMD16<Float>) {
        guard row < rows else { return }
        let line = c + row * ldc
        if columns == 32 {
            let raw = UnsafeMutableRawPointer(line)
            raw.storeBytes(of: raw.loadUnaligned(as: SIMD16<Float>.self) + scale * left, as: SIMD16<Float>.self)
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) + scale * right,
                           toByteOffset: 64, as: SIMD16<Float>.self)
        } else {
            for j in 0..<columns { line[j] += alpha * (j < 16 ? left[j] : right[j - 16]) }
        }
    }
    store(0, c00, c01); store(1, c10, c11); store(2, c20, c21)
    store(3, c30, c31); store(4, c40, c41); store(5, c50, c51)
}
