// The three products of a fully connected layer, for small batches.
//
// A Linear layer's step is y = x·Wᵀ + b forward, dW = dyᵀ·x and dx = dy·W
// backward, with W stored (outFeatures, inFeatures). At a training batch of
// 32 these are ~1.6 M multiply-adds each: so little work that a packed,
// threaded GEMM spends as long packing operands (W transposed, strided),
// allocating its panels and handing work to a second thread as it spends
// multiplying. The kernels here read the operands where they lie, keep a 4×4
// block of 16-lane accumulators in registers, allocate nothing and run on the
// calling thread (split over the threads only when a product is large, see
// `parallelLinearWork`). Larger batches go to `sgemm`, whose packing pays off there.
//
// Layouts (row-major): x (rows, inFeatures), W (outFeatures, inFeatures),
// y and dy (rows, outFeatures), dW like W, dx like x.

/// Up to this many rows a Linear product runs in the small kernels (see the top of this file).
public let smallLinearRowLimit = 128

/// From this many multiply-adds on, a small-kernel product splits its output rows over the
/// threads. The seed CNN's 3136 → 128 layer at batch 64 does 25.7 M per product, which on one
/// thread left the other core idle for 7 % of a training step; the seed MLP's products (1.6 M)
/// stay on the calling thread, where handing work over would cost about what it saves. Each
/// output is computed by the same instructions in the same order either way, so the split
/// changes no bit.
public let parallelLinearWork = 1 << 22

/// Runs `body` over `rows` output rows: in one piece for small products, else in contiguous
/// pieces spread over the threads.
@inline(__always)
private func _forEachRowRange(rows: Int, work: Int, _ body: (Range<Int>) -> Void) {
    let chunks = work >= parallelLinearWork && Threading.count > 1 ? min(rows, 2 * Threading.count) : 1
    guard chunks > 1 else {
        body(0..<rows)
        return
    }
    Threading.parallelFor(chunks: chunks) { chunk in body(rows * chunk / chunks..<rows * (chunk + 1) / chunks) }
}

/// y = x·Wᵀ (+ b per column): `linear`'s forward product.
public func linearForward(input x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                          weight w: UnsafePointer<Float>, outFeatures: Int, bias: UnsafePointer<Float>?,
                          output y: UnsafeMutablePointer<Float>) {
    if rows <= smallLinearRowLimit {
        _forEachRowRange(rows: rows, work: rows * inFeatures * outFeatures) { part in
            _dotProducts(x + part.lowerBound * inFeatures, rows: part.count, w, columns: outFeatures, depth: inFeatures,
                         into: y + part.lowerBound * outFeatures)
        }
    } else {
        sgemm(transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures,
              a: x, lda: inFeatures, b: w, ldb: inFeatures, c: y, ldc: outFeatures)
    }
    if let bias {
        for row in 0..<rows {
            let line = y + row * outFeatures
            for j in 0..<outFeatures { line[j] += bias[j] }
        }
    }
}

/// dW = dyᵀ·x (outFeatures, inFeatures): the weight gradient of `linear`.
public func linearWeightGradient(outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, rows: Int,
                                 inFeatures: Int, outFeatures: Int, weightGradient dW: UnsafeMutablePointer<Float>) {
    if rows <= smallLinearRowLimit {
        // dW[o, :] = Σ_r dy[r, o] · x[r, :]: A(o, r) = dy[r·outFeatures + o].
        _forEachRowRange(rows: outFeatures, work: rows * inFeatures * outFeatures) { part in
            _broadcastProducts(dy + part.lowerBound, rowStride: 1, depthStride: outFeatures, rows: part.count, depth: rows,
                               x, columns: inFeatures, into: dW + part.lowerBound * inFeatures)
        }
    } else {
        sgemm(transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
              a: dy, lda: outFeatures, b: x, ldb: inFeatures, c: dW, ldc: inFeatures)
    }
}

/// dx = dy·W (rows, inFeatures): the input gradient of `linear`.
public func linearInputGradient(outputGradient dy: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rows: Int,
                                inFeatures: Int, outFeatures: Int, inputGradient dx: UnsafeMutablePointer<Float>) {
    if rows <= smallLinearRowLimit {
        // dx[r, :] = Σ_o dy[r, o] · W[o, :]: A(r, o) = dy[r·outFeatures + o].
        _forEachRowRange(rows: rows, work: rows * inFeatures * outFeatures) { part in
            _broadcastProducts(dy + part.lowerBound * outFeatures, rowStride: outFeatures, depthStride: 1,
                               rows: part.count, depth: outFeatures, w, columns: inFeatures,
                               into: dx + part.lowerBound * inFeatures)
        }
    } else {
        sgemm(transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures,
              a: dy, lda: outFeatures, b: w, ldb: inFeatures, c: dx, ldc: inFeatures)
    }
}

/// Sum of the 16 lanes as a tree (a plain `sum()` chains 15 dependent adds).
@inline(__always)
private func _horizontalSum(_ v: SIMD16<Float>) -> Float {
    let eight = v.lowHalf + v.highHalf
    let four = eight.lowHalf + eight.highHalf
    let two = four.lowHalf + four.highHalf
    return two[0] + two[1]
}

/// C (rows, columns) = A·Bᵀ with A (rows, depth) and B (columns, depth): every
/// entry a dot product of two contiguous rows. 4 rows of A × 4 rows of B per
/// block: 8 loads feed 16 FMAs, and the 16 accumulators stay in registers.
/// Edge blocks repeat the last row (computed, not stored).
private func _dotProducts(_ a: UnsafePointer<Float>, rows: Int, _ b: UnsafePointer<Float>, columns: Int, depth: Int,
                          into c: UnsafeMutablePointer<Float>) {
    guard rows > 0, columns > 0 else { return }
    let vectorDepth = depth / 16 * 16
    var row = 0
    while row < rows {
        let a0 = a + row * depth, a1 = a + min(row + 1, rows - 1) * depth
        let a2 = a + min(row + 2, rows - 1) * depth, a3 = a + min(row + 3, rows - 1) * depth
        var column = 0
        while column < columns {
            let b0 = b + column * depth, b1 = b + min(column + 1, columns - 1) * depth
            let b2 = b + min(column + 2, columns - 1) * depth, b3 = b + min(column + 3, columns - 1) * depth
            var s00 = SIMD16<Float>(), s01 = SIMD16<Float>(), s02 = SIMD16<Float>(), s03 = SIMD16<Float>()
            var s10 = SIMD16<Float>(), s11 = SIMD16<Float>(), s12 = SIMD16<Float>(), s13 = SIMD16<Float>()
            var s20 = SIMD16<Float>(), s21 = SIMD16<Float>(), s22 = SIMD16<Float>(), s23 = SIMD16<Float>()
            var s30 = SIMD16<Float>(), s31 = SIMD16<Float>(), s32 = SIMD16<Float>(), s33 = SIMD16<Float>()
            var p = 0
            while p < vectorDepth {
                let x0 = _load16(a0 + p), x1 = _load16(a1 + p), x2 = _load16(a2 + p), x3 = _load16(a3 + p)
                let w0 = _load16(b0 + p), w1 = _load16(b1 + p)
                s00 = _fusedMultiplyAdd(s00, x0, w0); s01 = _fusedMultiplyAdd(s01, x0, w1)
                s10 = _fusedMultiplyAdd(s10, x1, w0); s11 = _fusedMultiplyAdd(s11, x1, w1)
                s20 = _fusedMultiplyAdd(s20, x2, w0); s21 = _fusedMultiplyAdd(s21, x2, w1)
                s30 = _fusedMultiplyAdd(s30, x3, w0); s31 = _fusedMultiplyAdd(s31, x3, w1)
                let w2 = _load16(b2 + p), w3 = _load16(b3 + p)
                s02 = _fusedMultiplyAdd(s02, x0, w2); s03 = _fusedMultiplyAdd(s03, x0, w3)
                s12 = _fusedMultiplyAdd(s12, x1, w2); s13 = _fusedMultiplyAdd(s13, x1, w3)
                s22 = _fusedMultiplyAdd(s22, x2, w2); s23 = _fusedMultiplyAdd(s23, x2, w3)
                s32 = _fusedMultiplyAdd(s32, x3, w2); s33 = _fusedMultiplyAdd(s33, x3, w3)
                p += 16
            }
            @inline(__always) func store(_ i: Int, _ j: Int, _ sum: SIMD16<Float>, _ ai: UnsafePointer<Float>,
                                         _ bj: UnsafePointer<Float>) {
                guard row + i < rows, column + j < columns else { return }
                var total = _horizontalSum(sum)
                for q in vectorDepth..<depth { total += ai[q] * bj[q] }
                c[(row + i) * columns + column + j] = total
            }
            store(0, 0, s00, a0, b0); store(0, 1, s01, a0, b1); store(0, 2, s02, a0, b2); store(0, 3, s03, a0, b3)
            store(1, 0, s10, a1, b0); store(1, 1, s11, a1, b1); store(1, 2, s12, a1, b2); store(1, 3, s13, a1, b3)
            store(2, 0, s20, a2, b0); store(2, 1, s21, a2, b1); store(2, 2, s22, a2, b2); store(2, 3, s23, a2, b3)
            store(3, 0, s30, a3, b0); store(3, 1, s31, a3, b1); store(3, 2, s32, a3, b2); store(3, 3, s33, a3, b3)
            column += 4
        }
        row += 4
    }
}

/// C (rows, columns) = Σ_p A(i, p) · B[p, :] with A(i, p) = a[i·rowStride + p·depthStride]
/// and B (depth, columns) contiguous: each row of C a sum of rows of B scaled by
/// broadcast scalars. 4 rows of C × 64 columns per block: 4 loads and 4
/// broadcasts feed 16 FMAs. Column tails go 16 lanes at a time, then scalar.
private func _broadcastProducts(_ a: UnsafePointer<Float>, rowStride: Int, depthStride: Int, rows: Int, depth: Int,
                                _ b: UnsafePointer<Float>, columns: Int, into c: UnsafeMutablePointer<Float>) {
    guard rows > 0, columns > 0 else { return }
    var row = 0
    while row < rows {
        let r0 = row, r1 = min(row + 1, rows - 1), r2 = min(row + 2, rows - 1), r3 = min(row + 3, rows - 1)
        let blockRows = min(4, rows - row)
        var column = 0
        while column + 64 <= columns {
            var s00 = SIMD16<Float>(), s01 = SIMD16<Float>(), s02 = SIMD16<Float>(), s03 = SIMD16<Float>()
            var s10 = SIMD16<Float>(), s11 = SIMD16<Float>(), s12 = SIMD16<Float>(), s13 = SIMD16<Float>()
            var s20 = SIMD16<Float>(), s21 = SIMD16<Float>(), s22 = SIMD16<Float>(), s23 = SIMD16<Float>()
            var s30 = SIMD16<Float>(), s31 = SIMD16<Float>(), s32 = SIMD16<Float>(), s33 = SIMD16<Float>()
            for p in 0..<depth {
                let line = b + p * columns + column
                let v0 = _load16(line), v1 = _load16(line + 16), v2 = _load16(line + 32), v3 = _load16(line + 48)
                let g0 = SIMD16<Float>(repeating: a[r0 * rowStride + p * depthStride])
                let g1 = SIMD16<Float>(repeating: a[r1 * rowStride + p * depthStride])
                s00 = _fusedMultiplyAdd(s00, g0, v0); s01 = _fusedMultiplyAdd(s01, g0, v1)
                s02 = _fusedMultiplyAdd(s02, g0, v2); s03 = _fusedMultiplyAdd(s03, g0, v3)
                s10 = _fusedMultiplyAdd(s10, g1, v0); s11 = _fusedMultiplyAdd(s11, g1, v1)
                s12 = _fusedMultiplyAdd(s12, g1, v2); s13 = _fusedMultiplyAdd(s13, g1, v3)
                let g2 = SIMD16<Float>(repeating: a[r2 * rowStride + p * depthStride])
                let g3 = SIMD16<Float>(repeating: a[r3 * rowStride + p * depthStride])
                s20 = _fusedMultiplyAdd(s20, g2, v0); s21 = _fusedMultiplyAdd(s21, g2, v1)
                s22 = _fusedMultiplyAdd(s22, g2, v2); s23 = _fusedMultiplyAdd(s23, g2, v3)
                s30 = _fusedMultiplyAdd(s30, g3, v0); s31 = _fusedMultiplyAdd(s31, g3, v1)
                s32 = _fusedMultiplyAdd(s32, g3, v2); s33 = _fusedMultiplyAdd(s33, g3, v3)
            }
            @inline(__always) func store(_ i: Int, _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>,
                                         _ v3: SIMD16<Float>) {
                guard i < blockRows else { return }
                let out = UnsafeMutableRawPointer(c + (row + i) * columns + column)
                out.storeBytes(of: v0, as: SIMD16<Float>.self)
                out.storeBytes(of: v1, toByteOffset: 64, as: SIMD16<Float>.self)
                out.storeBytes(of: v2, toByteOffset: 128, as: SIMD16<Float>.self)
                out.storeBytes(of: v3, toByteOffset: 192, as: SIMD16<Float>.self)
            }
            store(0, s00, s01, s02, s03); store(1, s10, s11, s12, s13)
            store(2, s20, s21, s22, s23); store(3, s30, s31, s32, s33)
            column += 64
        }
        while column + 16 <= columns {
            var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
            for p in 0..<depth {
                let v = _load16(b + p * columns + column)
                s0 = _fusedMultiplyAdd(s0, SIMD16(repeating: a[r0 * rowStride + p * depthStride]), v)
                s1 = _fusedMultiplyAdd(s1, SIMD16(repeating: a[r1 * rowStride + p * depthStride]), v)
                s2 = _fusedMultiplyAdd(s2, SIMD16(repeating: a[r2 * rowStride + p * depthStride]), v)
                s3 = _fusedMultiplyAdd(s3, SIMD16(repeating: a[r3 * rowStride + p * depthStride]), v)
            }
            @inline(__always) func store(_ i: Int, _ sum: SIMD16<Float>) {
                guard i < blockRows else { return }
                UnsafeMutableRawPointer(c + (row + i) * columns + column).storeBytes(of: sum, as: SIMD16<Float>.self)
            }
            store(0, s0); store(1, s1); store(2, s2); store(3, s3)
            column += 16
        }
        for i in 0..<blockRows {
            for j in column..<columns {
                var total: Float = 0
                for p in 0..<depth { total += a[(row + i) * rowStride + p * depthStride] * b[p * columns + j] }
                c[(row + i) * columns + j] = total
            }
        }
        row += 4
    }
}
