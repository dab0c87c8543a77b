// 2-d pooling over image planes: max (with the arg-max saved for backward),
// average, and global average. Every kernel works plane by plane on
// (planes, H, W) buffers, planes = batch·channels of an NCHW tensor, and
// spreads the planes over threads.

/// Planes per thread chunk: whole planes, a few chunks per thread.
@inline(__always)
private func _planeChunks(_ planes: Int, planeSize: Int) -> Int {
    // Below ~32k values the threads' start-up costs more than the work.
    Threading.count == 1 || planes * planeSize < 1 << 15 ? 1 : min(planes, Threading.count * 2)
}

/// Max pooling forward: each output is the largest value in its window (padding never wins);
/// a NaN in a window wins, as in PyTorch, and so does the element PyTorch picks (`_beats`).
///
/// - Parameters:
///   - input: (planes, H, W).
///   - output: (planes, oH, oW); every value is written.
///   - argmax: (planes, oH, oW): the flat index ih·W + iw, within its plane, of the value chosen.
/// - Precondition: every window holds at least one input position (padding ≤ half the window).
public func maxPool2DForward(input: UnsafePointer<Float>, planes: Int, window w: SlidingWindow,
                             output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>) {
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let outputPlane = w.outputSize.height * w.outputSize.width
    let chunks = _planeChunks(planes, planeSize: height * width)
    let isPlainPairs = w.window == Size2D(2) && w.stride == Size2D(2) && w.padding == Size2D(0) && w.dilation == Size2D(1)
    nonisolated(unsafe) let (x, y, indices) = (input, output, argmax)
    Threading.parallelFor(chunks: chunks) { chunk in
        for plane in planes * chunk / chunks..<planes * (chunk + 1) / chunks {
            let source = x + plane * height * width
            let target = y + plane * outputPlane, targetIndices = indices + plane * outputPlane
            if isPlainPairs {
                _maxPoolPlane2x2(source, width: width, output: target, argmax: targetIndices, outputSize: w.outputSize)
            } else {
                _maxPoolPlane(source, window: w, output: target, argmax: targetIndices)
            }
        }
    }
}

/// Whether `value` replaces `best` as a window's maximum, in a row-major scan of the window:
/// larger, or a NaN. PyTorch's CPU kernel scans the same way with the same test
/// (`val > maxval || isnan(val)`), so of equal values the first wins, of NaNs the last, and
/// the gradient goes to the same element as PyTorch's. Written without `||` so that it
/// compiles to selects, not branches: which candidate wins is data dependent and a branch on
/// it mispredicts about every other time.
@inline(__always)
private func _beats(_ value: Float, _ best: Float) -> Bool {
    (value > best) != (value != value)   // at most one side holds: a NaN is never greater
}

/// One plane of 2×2, stride 2 max pooling (the common case, without any bounds checks).
///
/// Each output row goes in blocks of 8 outputs (4 when the row has fewer than 8, one by one
/// when it has fewer than 4). A block is one scan of the window — a, b, c, d in row-major
/// order, `_beats` on every lane at once — so each lane picks the element the scalar scan
/// picks. The last block of a row is shifted left to end with the row: it recomputes a few
/// outputs (with the same result) instead of needing a scalar tail.
///
/// Why: one window at a time the scan is a chain of dependent compares and selects, ~30 cycles
/// per output; the two pools took 12 % of the seed CNN's training time that way.
@inline(__always)
private func _maxPoolPlane2x2(_ source: UnsafePointer<Float>, width: Int, output: UnsafeMutablePointer<Float>,
                              argmax: UnsafeMutablePointer<Int32>, outputSize: Size2D) {
    let outWidth = outputSize.width
    for outRow in 0..<outputSize.height {
        let top = source + 2 * outRow * width
        let line = output + outRow * outWidth, lineIndices = argmax + outRow * outWidth
        let topIndex = Int32(truncatingIfNeeded: 2 * outRow * width), rowWidth = Int32(truncatingIfNeeded: width)
        let below = top + width, floatWidth = Float(width)
        if outWidth >= 8 && width < 1 << 22 {
            _forEachBlock(of: 8, in: outWidth) { block in
                let (best, offset) = _windowMaxima(_load16(top + 2 * block), _load16(below + 2 * block), width: floatWidth)
                let first = SIMD8(repeating: topIndex &+ Int32(truncatingIfNeeded: 2 * block)) &+ SIMD8(0, 2, 4, 6, 8, 10, 12, 14)
                UnsafeMutableRawPointer(line + block).storeBytes(of: best, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(lineIndices + block).storeBytes(
                    of: first &+ _wholeNumbers(offset), as: SIMD8<Int32>.self)
            }
        } else if outWidth >= 4 && width < 1 << 22 {
            _forEachBlock(of: 4, in: outWidth) { block in
                let (best, offset) = _windowMaxima(
                    UnsafeRawPointer(top + 2 * block).loadUnaligned(as: SIMD8<Float>.self),
                    UnsafeRawPointer(below + 2 * block).loadUnaligned(as: SIMD8<Float>.self), width: floatWidth)
                let first = SIMD4(repeating: topIndex &+ Int32(truncatingIfNeeded: 2 * block)) &+ SIMD4(0, 2, 4, 6)
                UnsafeMutableRawPointer(line + block).storeBytes(of: best, as: SIMD4<Float>.self)
                UnsafeMutableRawPointer(lineIndices + block).storeBytes(
                    of: first &+ _wholeNumbers(offset), as: SIMD4<Int32>.self)
            }
        } else {
            for outColumn in 0..<outWidth {
                // Wrapping arithmetic and every index computed up front: no overflow check may
                // branch between the selects.
                let column = 2 * outColumn
                let first = topIndex &+ Int32(truncatingIfNeeded: column)
                let indices = (first &+ 1, first &+ rowWidth, first &+ rowWidth &+ 1)
                var best = top[column], bestIndex = first
                let candidates = (top[column + 1], top[width + column], top[width + column + 1])
                var wins = _beats(candidates.0, best)
                best = wins ? candidates.0 : best
                bestIndex = wins ? indices.0 : bestIndex
                wins = _beats(candidates.1, best)
                best = wins ? candidates.1 : best
                bestIndex = wins ? indices.1 : bestIndex
                wins = _beats(candidates.2, best)
                best = wins ? candidates.2 : best
                bestIndex = wins ? indices.2 : bestIndex
                line[outColumn] = best
                lineIndices[outColumn] = bestIndex
            }
        }
    }
}

/// Calls `body` with the first output of each block of `lanes` outputs in a row of `outWidth ≥
/// lanes`; the last block is shifted left to end with the row (it may overlap the one before).
@inline(__always)
private func _forEachBlock(of lanes: Int, in outWidth: Int, _ body: (Int) -> Void) {
    var start = 0
    while start + lanes < outWidth {
        body(start)
        start += lanes
    }
    body(outWidth - lanes)
}

// The 2×2 windows of 8 (or 4) neighbouring outputs at once: `upper` and `lower` are the two input
// rows under them, whose even lanes are each window's left column and odd lanes its right
// column; `width` is the input row's. The scan is the scalar one — a, b, c, d, keeping the
// best so far by `_beats` — on every lane. Returns each window's maximum and the offset of
// the winner from the window's top-left element (0, 1, width or width + 1).
//
// The offset is carried as a Float (exact: the caller keeps width < 2²²) because the standard
// library's `replace(with:where:)` is a lane-by-lane loop that LLVM turns into one masked move
// for Float lanes but into a long mask shuffle for Int32 lanes next to Float compares. Two
// concrete overloads, not one generic function: the generic SIMD comparisons stay lane-by-lane
// loops even when specialized; the concrete ones are single instructions.

@inline(__always)
private func _windowMaxima(_ upper: SIMD16<Float>, _ lower: SIMD16<Float>, width: Float)
    -> (maximum: SIMD8<Float>, offset: SIMD8<Float>) {
    var best = upper.evenHalf, offset = SIMD8<Float>()
    _keepWinner(upper.oddHalf, offset: SIMD8(repeating: 1), best: &best, bestOffset: &offset)
    _keepWinner(lower.evenHalf, offset: SIMD8(repeating: width), best: &best, bestOffset: &offset)
    _keepWinner(lower.oddHalf, offset: SIMD8(repeating: width + 1), best: &best, bestOffset: &offset)
    return (best, offset)
}

@inline(__always)
private func _windowMaxima(_ upper: SIMD8<Float>, _ lower: SIMD8<Float>, width: Float)
    -> (maximum: SIMD4<Float>, offset: SIMD4<Float>) {
    var best = upper.evenHalf, offset = SIMD4<Float>()
    _keepWinner(upper.oddHalf, offset: SIMD4(repeating: 1), best: &best, bestOffset: &offset)
    _keepWinner(lower.evenHalf, offset: SIMD4(repeating: width), best: &best, bestOffset: &offset)
    _keepWinner(lower.oddHalf, offset: SIMD4(repeating: width + 1), best: &best, bestOffset: &offset)
    return (best, offset)
}

@inline(__always)
private func _keepWinner(_ value: SIMD8<Float>, offset: SIMD8<Float>, best: inout SIMD8<Float>,
                         bestOffset: inout SIMD8<Float>) {
    let wins = (value .> best) .^ (value .!= value)
    best.replace(with: value, where: wins)
    bestOffset.replace(with: offset, where: wins)
}

@inline(__always)
private func _keepWinner(_ value: SIMD4<Float>, offset: SIMD4<Float>, best: inout SIMD4<Float>,
                         bestOffset: inout SIMD4<Float>) {
    let wins = (value .> best) .^ (value .!= value)
    best.replace(with: value, where: wins)
    bestOffset.replace(with: offset, where: wins)
}

/// Whole Floats in 0..<2²³ as Int32, without the range check (and branch) of `Int32(_:)`: adding
/// 2²³ moves the value into the low bits of the significand, where its bit pattern reads it off.
/// A lane loop of plain arithmetic, which LLVM turns into a few vector instructions.
@inline(__always)
private func _wholeNumbers<Lanes: SIMD>(_ values: Lanes) -> Lanes.MaskStorage where Lanes.Scalar == Float {
    var result = Lanes.MaskStorage()
    for lane in values.indices {
        result[lane] = Lanes.MaskStorage.Scalar(truncatingIfNeeded: (values[lane] + 0x1p23).bitPattern & 0x7F_FFFF)
    }
    return result
}

/// One plane of max pooling with any window, stride, padding and dilation.
private func _maxPoolPlane(_ source: UnsafePointer<Float>, window w: SlidingWindow, output: UnsafeMutablePointer<Float>,
                           argmax: UnsafeMutablePointer<Int32>) {
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    for outRow in 0..<w.outputSize.height {
        let rows = _taps(output: outRow, input: height, window: w.window.height, stride: w.stride.height,
                         padding: w.padding.height, dilation: w.dilation.height)
        let rowStart = outRow * w.stride.height - w.padding.height
        for outColumn in 0..<w.outputSize.width {
            let columns = _taps(output: outColumn, input: width, window: w.window.width, stride: w.stride.width,
                                padding: w.padding.width, dilation: w.dilation.width)
            precondition(!rows.isEmpty && !columns.isEmpty,
                         "maxPool2D: the window at (\(outRow), \(outColumn)) covers only padding")
            let columnStart = outColumn * w.stride.width - w.padding.width
            var bestIndex = (rowStart + rows.lowerBound * w.dilation.height) * width + columnStart
                + columns.lowerBound * w.dilation.width
            var best = source[bestIndex]
            for i in rows {
                let lineIndex = (rowStart + i * w.dilation.height) * width + columnStart
                for j in columns {
                    let index = lineIndex + j * w.dilation.width
                    let wins = _beats(source[index], best)
                    best = wins ? source[index] : best
                    bestIndex = wins ? index : bestIndex
                }
            }
            output[outRow * w.outputSize.width + outColumn] = best
            argmax[outRow * w.outputSize.width + outColumn] = Int32(truncatingIfNeeded: bestIndex)
        }
    }
}

/// Max pooling backward: each output's gradient goes to the input position it was taken from
/// (summed where windows overlap and pick the same position).
///
/// - Parameters:
///   - outputGradient: (planes, oH, oW).
///   - argmax: (planes, oH, oW), from `maxPool2DForward`.
///   - inputGradient: (planes, H, W); overwritten.
public func maxPool2DBackward(outputGradient: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, planes: Int,
                              window w: SlidingWindow, inputGradient: UnsafeMutablePointer<Float>) {
    let inputPlane = w.inputSize.height * w.inputSize.width
    let outputPlane = w.outputSize.height * w.outputSize.width
    let chunks = _planeChunks(planes, planeSize: inputPlane)
    nonisolated(unsafe) let (dy, indices, dx) = (outputGradient, argmax, inputGradient)
    Threading.parallelFor(chunks: chunks) { chunk in
        let first = planes * chunk / chunks, last = planes * (chunk + 1) / chunks
        (dx + first * inputPlane).update(repeating: 0, count: (last - first) * inputPlane)
        for plane in first..<last {
            let target = dx + plane * inputPlane
            let gradient = dy + plane * outputPlane
            let chosen = indices + plane * outputPlane
            for position in 0..<outputPlane { target[Int(chosen[position])] += gradient[position] }
        }
    }
}

/// The divisor of one average-pooling window: the whole window when padding counts
/// (PyTorch's `count_include_pad=True`), else the input positions it covers.
@inline(__always)
private func _averageDivisor(_ w: SlidingWindow, rows: Range<Int>, columns: Range<Int>, countsPadding: Bool) -> Float {
    countsPadding ? Float(w.window.height * w.window.width) : Float(rows.count * columns.count)
}

/// Window taps of output position `o` that land inside the input along one axis.
@inline(__always)
private func _taps(output o: Int, input: Int, window: Int, stride: Int, padding: Int, dilation: Int) -> Range<Int> {
    let start = o * stride - padding
    // taps t with 0 ≤ start + t·dilation < input
    let lower = start >= 0 ? 0 : (-start + dilation - 1) / dilation
    let upper = min(window, (input - 1 - start) < 0 ? 0 : (input - 1 - start) / dilation + 1)
    return lower < upper ? lower..<upper : lower..<lower
}

/// Average pooling forward: each output is the mean of its window.
///
/// - Parameters:
///   - input: (planes, H, W).
///   - output: (planes, oH, oW); every value is written.
///   - countsPadding: divide by the whole window (true, PyTorch's default) or by the input
///     positions inside it (false). A window of padding only gives 0 when padding is not counted.
public func averagePool2DForward(input: UnsafePointer<Float>, planes: Int, window w: SlidingWindow, countsPadding: Bool,
                                 output: UnsafeMutablePointer<Float>) {
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let (outHeight, outWidth) = (w.outputSize.height, w.outputSize.width)
    let chunks = _planeChunks(planes, planeSize: height * width)
    nonisolated(unsafe) let (x, y) = (input, output)
    Threading.parallelFor(chunks: chunks) { chunk in
        for plane in planes * chunk / chunks..<planes * (chunk + 1) / chunks {
            let source = x + plane * height * width
            let target = y + plane * outHeight * outWidth
            for outRow in 0..<outHeight {
                let rows = _taps(output: outRow, input: height, window: w.window.height, stride: w.stride.height,
                                 padding: w.padding.height, dilation: w.dilation.height)
                let rowStart = outRow * w.stride.height - w.padding.height
                for outColumn in 0..<outWidth {
                    let columns = _taps(output: outColumn, input: width, window: w.window.width, stride: w.stride.width,
                                        padding: w.padding.width, dilation: w.dilation.width)
                    let columnStart = outColumn * w.stride.width - w.padding.width
                    var total: Float = 0
                    for i in rows {
                        let line = source + (rowStart + i * w.dilation.height) * width + columnStart
                        for j in columns { total += line[j * w.dilation.width] }
                    }
                    let divisor = _averageDivisor(w, rows: rows, columns: columns, countsPadding: countsPadding)
                    target[outRow * outWidth + outColumn] = divisor > 0 ? total / divisor : 0
                }
            }
        }
    }
}

/// Average pooling backward: each output's gradient, divided by its window's divisor, is added
/// to every input position of the window.
///
/// - Parameters:
///   - outputGradient: (planes, oH, oW).
///   - inputGradient: (planes, H, W); overwritten.
public func averagePool2DBackward(outputGradient: UnsafePointer<Float>, planes: Int, window w: SlidingWindow,
                                  countsPadding: Bool, inputGradient: UnsafeMutablePointer<Float>) {
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let (outHeight, outWidth) = (w.outputSize.height, w.outputSize.width)
    let chunks = _planeChunks(planes, planeSize: height * width)
    nonisolated(unsafe) let (dy, dx) = (outputGradient, inputGradient)
    Threading.parallelFor(chunks: chunks) { chunk in
        for plane in planes * chunk / chunks..<planes * (chunk + 1) / chunks {
            let gradient = dy + plane * outHeight * outWidth
            let target = dx + plane * height * width
            target.update(repeating: 0, count: height * width)
            for outRow in 0..<outHeight {
                let rows = _taps(output: outRow, input: height, window: w.window.height, stride: w.stride.height,
                                 padding: w.padding.height, dilation: w.dilation.height)
                let rowStart = outRow * w.stride.height - w.padding.height
                for outColumn in 0..<outWidth {
                    let columns = _taps(output: outColumn, input: width, window: w.window.width, stride: w.stride.width,
                                        padding: w.padding.width, dilation: w.dilation.width)
                    let columnStart = outColumn * w.stride.width - w.padding.width
                    let divisor = _averageDivisor(w, rows: rows, columns: columns, countsPadding: countsPadding)
                    guard divisor > 0 else { continue }
                    let share = gradient[outRow * outWidth + outColumn] / divisor
                    for i in rows {
                        let line = target + (rowStart + i * w.dilation.height) * width + columnStart
                        for j in columns { line[j * w.dilation.width] += share }
                    }
                }
            }
        }
    }
}

/// Global average pooling forward: the mean of each plane.
///
/// - Parameters:
///   - input: (planes, planeSize).
///   - output: (planes).
public func globalAveragePoolForward(input: UnsafePointer<Float>, planes: Int, planeSize: Int,
                                     output: UnsafeMutablePointer<Float>) {
    precondition(planeSize > 0, "globalAveragePool: empty planes")
    for plane in 0..<planes {
        let source = input + plane * planeSize
        // A Double accumulator: planes of 10⁴–10⁵ values lose digits in a Float sum.
        var total = 0.0
        for i in 0..<planeSize { total += Double(source[i]) }
        output[plane] = Float(total / Double(planeSize))
    }
}

/// Global average pooling backward: each plane's gradient spread evenly over the plane.
///
/// - Parameters:
///   - outputGradient: (planes).
///   - inputGradient: (planes, planeSize); overwritten.
public func globalAveragePoolBackward(outputGradient: UnsafePointer<Float>, planes: Int, planeSize: Int,
                                      inputGradient: UnsafeMutablePointer<Float>) {
    for plane in 0..<planes {
        (inputGradient + plane * planeSize).update(repeating: outputGradient[plane] / Float(planeSize), count: planeSize)
    }
}
