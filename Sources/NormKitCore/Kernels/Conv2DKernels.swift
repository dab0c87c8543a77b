// 2-d convolution (cross-correlation, as in PyTorch) on NCHW tensors, forward
// and backward, by im2col + the packed SGEMM.
//
// For one image the convolution is a matrix product: with the image unfolded
// into col (Cin·kH·kW, oH·oW) — row (c, i, j) holds, for every output position,
// the input value that kernel tap (i, j) of channel c sees there (0 in the
// padding) — the output is W (Cout, Cin·kH·kW) · col. Per group g the rows and
// columns restrict to the group's channels. Images are spread over threads;
// each image's col matrix (225 KiB for a 32-channel 14×14 3×3 layer) stays in
// the core's L2 between the unfolding and the product, which is why this works
// image by image rather than on one batch-wide col matrix.

/// The shapes of one 2-d convolution.
///
/// input (batch, inChannels, H, W); weight (outChannels, inChannels/groups, kH, kW);
/// bias (outChannels); output (batch, outChannels, oH, oW), with oH, oW from `window`.
public struct Conv2DGeometry: Sendable, Equatable {
    public let batch: Int
    public let inChannels: Int
    public let outChannels: Int
    public let groups: Int
    public let window: SlidingWindow

    public init(batch: Int, inChannels: Int, outChannels: Int, inputSize: Size2D, kernelSize: Size2D,
                stride: Size2D = 1, padding: Size2D = 0, dilation: Size2D = 1, groups: Int = 1) {
        precondition(batch >= 0, "conv2D: batch \(batch) is negative")
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "conv2D: groups \(groups) must divide inChannels \(inChannels) and outChannels \(outChannels)")
        self.batch = batch
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.window = SlidingWindow(inputSize: inputSize, window: kernelSize, stride: stride, padding: padding,
                                    dilation: dilation, what: "conv2D")
    }

    public var inputSize: Size2D { window.inputSize }
    public var kernelSize: Size2D { window.window }
    public var outputSize: Size2D { window.outputSize }
    /// Rows of one group's col matrix: (inChannels/groups)·kH·kW, the weight's fan-in.
    public var groupDepth: Int { inChannels / groups * kernelSize.height * kernelSize.width }
    var outChannelsPerGroup: Int { outChannels / groups }
    var inputPlane: Int { inputSize.height * inputSize.width }
    var outputPlane: Int { outputSize.height * outputSize.width }
    public var inputCount: Int { batch * inChannels * inputPlane }
    public var outputCount: Int { batch * outChannels * outputPlane }
    public var weightCount: Int { outChannels * groupDepth }
    public var inputShape: [Int] { [batch, inChannels, inputSize.height, inputSize.width] }
    public var outputShape: [Int] { [batch, outChannels, outputSize.height, outputSize.width] }
    public var weightShape: [Int] { [outChannels, inChannels / groups, kernelSize.height, kernelSize.width] }

    /// A 1×1 kernel with stride 1 and no padding reads each image as its own col matrix.
    var isPointwise: Bool {
        kernelSize == Size2D(1) && window.stride == Size2D(1) && window.padding == Size2D(0)
    }
    /// Stride 1 with output rows as wide as input rows ("same" padding along the width).
    var keepsRowWidth: Bool {
        window.stride == Size2D(1) && outputSize.width == inputSize.width
    }
    /// The col matrix of one image, all groups: (inChannels·kH·kW, oH·oW).
    var columnCount: Int { groups * groupDepth * outputPlane }
}

/// Splits `batch` images into contiguous ranges for the threads. More chunks than
/// threads lets a thread that a busy host slowed down take fewer of them.
private func _imageChunks(_ batch: Int) -> Int {
    Threading.count == 1 ? 1 : min(batch, Threading.count * 2)
}

/// Copies `count` floats with vector moves. The rows im2col copies are short (a few dozen
/// floats), and calling memmove for each cost more than the copy.
@inline(__always)
private func _copyShort(_ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        UnsafeMutableRawPointer(target + i).storeBytes(
            of: UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
        i += 16
    }
    while i + 4 <= count {
        UnsafeMutableRawPointer(target + i).storeBytes(
            of: UnsafeRawPointer(source + i).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
        i += 4
    }
    while i < count { target[i] = source[i]; i += 1 }
}

/// Sets `count` floats to 0 with vector stores, the last one overlapping the one before when
/// `count` is not a multiple of the width, and at most three single stores. No loop over
/// single floats: LLVM turns one into a call to memset, and these runs are short — the
/// padding im2col zeroes is often one float per row — so that the calls (half a million per
/// seed-CNN training step) cost more than the stores.
@inline(__always)
private func _zeroShort(_ target: UnsafeMutablePointer<Float>, count: Int) {
    if count >= 16 {
        var i = 0
        while i + 16 < count {
            UnsafeMutableRawPointer(target + i).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
            i += 16
        }
        UnsafeMutableRawPointer(target + count - 16).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
    } else if count >= 4 {
        var i = 0
        while i + 4 < count {
            UnsafeMutableRawPointer(target + i).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self)
            i += 4
        }
        UnsafeMutableRawPointer(target + count - 4).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self)
    } else {
        if count > 0 { target[0] = 0 }
        if count > 1 { target[1] = 0 }
        if count > 2 { target[2] = 0 }
    }
}

/// Adds `count` floats of `source` onto `target` with vector operations.
@inline(__always)
private func _addShort(_ source: UnsafePointer<Float>, onto target: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        let sum = UnsafeRawPointer(target + i).loadUnaligned(as: SIMD16<Float>.self)
            + UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(target + i).storeBytes(of: sum, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count { target[i] += source[i]; i += 1 }
}

/// Σ of `count` floats in 16 interleaved partial sums (a single running Float sum cannot be
/// vectorized, and the partial sums are also more accurate).
@inline(__always)
private func _sum(_ values: UnsafePointer<Float>, count: Int) -> Float {
    var partial = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        partial += UnsafeRawPointer(values + i).loadUnaligned(as: SIMD16<Float>.self)
        i += 16
    }
    var total = partial.sum()
    while i < count { total += values[i]; i += 1 }
    return total
}

/// The common "same" case — stride 1 and output rows as wide as input rows (2·padding =
/// dilation·(k − 1)) — where the col row of tap (i, j) is the input plane shifted by
/// (i·dilation − padding) rows and δ = j·dilation − padding columns. One contiguous copy of the
/// whole valid block replaces a copy per output row (conv 32→64 on 14×14: 288 instead of 4032
/// copies per image); the |δ| values per row that the shift wraps in from the neighbouring row
/// are padding and are zeroed afterwards.
private func _unfoldKeepingRowWidth(image: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                                    col: UnsafeMutablePointer<Float>) {
    let w = g.window
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let plane = height * width, colRow = w.outputSize.height * width
    var line = col
    for channel in 0..<g.inChannels {
        let source = image + channel * plane
        for i in 0..<w.window.height {
            let rows = SlidingWindow.validOutputRange(input: height, output: w.outputSize.height, stride: 1,
                                                      padding: w.padding.height, dilation: w.dilation.height, tap: i)
            let rowShift = i * w.dilation.height - w.padding.height
            for j in 0..<w.window.width {
                let shift = j * w.dilation.width - w.padding.width
                if rows.isEmpty || abs(shift) >= width {
                    _zeroShort(line, count: colRow)
                    line += colRow
                    continue
                }
                let blockStart = rows.lowerBound * width, blockEnd = rows.upperBound * width
                _zeroShort(line, count: blockStart)
                _zeroShort(line + blockEnd, count: colRow - blockEnd)
                // line[k] = source[k + rowShift·width + shift] on the block, skipping the reads that
                // would fall before the plane (shift < 0) or after it (shift > 0).
                let front = max(0, -shift), back = max(0, shift)
                let offset = rowShift * width + shift
                (line + blockStart + front).update(from: source + blockStart + front + offset,
                                                   count: blockEnd - blockStart - front - back)
                for row in rows {
                    let rowLine = line + row * width
                    if shift > 0 { _zeroShort(rowLine + width - shift, count: shift) }
                    if shift < 0 { _zeroShort(rowLine, count: -shift) }
                }
                line += colRow
            }
        }
    }
}

/// The adjoint of `_unfoldKeepingRowWidth`: zeroes the col entries that belong to padding, then
/// adds each tap's valid block onto the image in one contiguous pass.
private func _foldKeepingRowWidth(col: UnsafeMutablePointer<Float>, geometry g: Conv2DGeometry,
                                  image: UnsafeMutablePointer<Float>) {
    let w = g.window
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let plane = height * width, colRow = w.outputSize.height * width
    var line = col
    for channel in 0..<g.inChannels {
        let target = image + channel * plane
        for i in 0..<w.window.height {
            let rows = SlidingWindow.validOutputRange(input: height, output: w.outputSize.height, stride: 1,
                                                      padding: w.padding.height, dilation: w.dilation.height, tap: i)
            let rowShift = i * w.dilation.height - w.padding.height
            for j in 0..<w.window.width {
                let shift = j * w.dilation.width - w.padding.width
                defer { line += colRow }
                if rows.isEmpty || abs(shift) >= width { continue }
                let blockStart = rows.lowerBound * width, blockEnd = rows.upperBound * width
                for row in rows {
                    let rowLine = line + row * width
                    if shift > 0 { _zeroShort(rowLine + width - shift, count: shift) }
                    if shift < 0 { _zeroShort(rowLine, count: -shift) }
                }
                let front = max(0, -shift), back = max(0, shift)
                let offset = rowShift * width + shift
                _addShort(line + blockStart + front, onto: target + blockStart + front + offset,
                          count: blockEnd - blockStart - front - back)
            }
        }
    }
}

/// One row of the unfolded matrix: the tap (i, j) of one input channel, as
/// `_forEachUnfoldedRow` hands it out.
private struct _UnfoldedRow {
    /// The row in col: oH·oW values, one per output position.
    let line: UnsafeMutablePointer<Float>
    /// Offset of the channel's plane in the image.
    let planeOffset: Int
    /// The vertical tap, and the output rows / columns whose input position lies inside the image.
    let i: Int
    let rows: Range<Int>, columns: Range<Int>
    /// Input column of output column 0 for this tap (before the stride).
    let columnOffset: Int
}

/// Calls `body` for every row of the unfolded matrix of one image, in col's order
/// (channel, then tap row i, then tap column j): the walk that `conv2DUnfold` and
/// its adjoint `conv2DFold` share.
@inline(__always)
private func _forEachUnfoldedRow(geometry g: Conv2DGeometry, col: UnsafeMutablePointer<Float>,
                                 _ body: (_UnfoldedRow) -> Void) {
    let w = g.window
    let (height, width) = (w.inputSize.height, w.inputSize.width)
    let (outHeight, outWidth) = (w.outputSize.height, w.outputSize.width)
    var line = col
    for channel in 0..<g.inChannels {
        for i in 0..<w.window.height {
            let rows = SlidingWindow.validOutputRange(input: height, output: outHeight, stride: w.stride.height,
                                                      padding: w.padding.height, dilation: w.dilation.height, tap: i)
            for j in 0..<w.window.width {
                let columns = SlidingWindow.validOutputRange(input: width, output: outWidth, stride: w.stride.width,
                                                             padding: w.padding.width, dilation: w.dilation.width, tap: j)
                body(_UnfoldedRow(line: line, planeOffset: channel * height * width, i: i, rows: rows, columns: columns,
                                  columnOffset: j * w.dilation.width - w.padding.width))
                line += outHeight * outWidth
            }
        }
    }
}

/// Unfolds one image (inChannels, H, W) into col (inChannels·kH·kW, oH·oW), zero in the padding.
func conv2DUnfold(image: UnsafePointer<Float>, geometry g: Conv2DGeometry, col: UnsafeMutablePointer<Float>) {
    if g.keepsRowWidth {
        _unfoldKeepingRowWidth(image: image, geometry: g, col: col)
        return
    }
    let w = g.window
    let width = w.inputSize.width, (outHeight, outWidth) = (w.outputSize.height, w.outputSize.width)
    _forEachUnfoldedRow(geometry: g, col: col) { tap in
        let columns = tap.columns
        for outRow in 0..<outHeight {
            let line = tap.line + outRow * outWidth
            guard tap.rows.contains(outRow), !columns.isEmpty else {
                _zeroShort(line, count: outWidth)
                continue
            }
            let source = image + tap.planeOffset
                + (outRow * w.stride.height - w.padding.height + tap.i * w.dilation.height) * width
            _zeroShort(line, count: columns.lowerBound)
            if w.stride.width == 1 {
                _copyShort(source + columns.lowerBound + tap.columnOffset, to: line + columns.lowerBound,
                           count: columns.count)
            } else {
                for outColumn in columns { line[outColumn] = source[outColumn * w.stride.width + tap.columnOffset] }
            }
            _zeroShort(line + columns.upperBound, count: outWidth - columns.upperBound)
        }
    }
}

/// The adjoint of `conv2DUnfold`: adds every col entry back onto the input position it was read
/// from. `image` (inChannels, H, W) must be zeroed (or hold what to add to) beforehand. The
/// entries of `col` that correspond to padding may be overwritten with 0.
func conv2DFold(col: UnsafeMutablePointer<Float>, geometry g: Conv2DGeometry, image: UnsafeMutablePointer<Float>) {
    if g.keepsRowWidth {
        _foldKeepingRowWidth(col: col, geometry: g, image: image)
        return
    }
    let w = g.window
    let width = w.inputSize.width, outWidth = w.outputSize.width
    _forEachUnfoldedRow(geometry: g, col: col) { tap in
        let columns = tap.columns
        guard !columns.isEmpty else { return }
        for outRow in tap.rows {
            let line = tap.line + outRow * outWidth
            let target = image + tap.planeOffset
                + (outRow * w.stride.height - w.padding.height + tap.i * w.dilation.height) * width
            if w.stride.width == 1 {
                _addShort(line + columns.lowerBound, onto: target + tap.columnOffset + columns.lowerBound,
                          count: columns.count)
            } else {
                for outColumn in columns { target[outColumn * w.stride.width + tap.columnOffset] += line[outColumn] }
            }
        }
    }
}

/// Convolution forward: output = W ⋆ input + bias.
///
/// - Parameters:
///   - input: (batch, inChannels, H, W).
///   - weight: (outChannels, inChannels/groups, kH, kW).
///   - bias: (outChannels), or nil.
///   - output: (batch, outChannels, oH, oW); every value is written.
public func conv2DForward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                          geometry g: Conv2DGeometry, output: UnsafeMutablePointer<Float>) {
    guard g.batch > 0 else { return }
    let chunks = _imageChunks(g.batch)
    nonisolated(unsafe) let (x, w, b, y) = (input, weight, bias, output)
    let pointwise = g.isPointwise
    Threading.parallelFor(chunks: chunks) { chunk in
        let images = g.batch * chunk / chunks..<g.batch * (chunk + 1) / chunks
        ScratchBuffers.withBuffer(count: pointwise ? 0 : g.columnCount) { scratch in
            for image in images {
                let imageInput = x + image * g.inChannels * g.inputPlane
                let imageOutput = y + image * g.outChannels * g.outputPlane
                let col: UnsafePointer<Float>
                if pointwise {
                    col = imageInput
                } else {
                    conv2DUnfold(image: imageInput, geometry: g, col: scratch)
                    col = UnsafePointer(scratch)
                }
                if let b {
                    for channel in 0..<g.outChannels {
                        (imageOutput + channel * g.outputPlane).update(repeating: b[channel], count: g.outputPlane)
                    }
                }
                for group in 0..<g.groups {
                    // (Cout/g, oH·oW) = W_g (Cout/g, depth) · col_g (depth, oH·oW)
                    sgemm(transposeA: false, transposeB: false, m: g.outChannelsPerGroup, n: g.outputPlane, k: g.groupDepth,
                          a: w + group * g.outChannelsPerGroup * g.groupDepth, lda: g.groupDepth,
                          b: col + group * g.groupDepth * g.outputPlane, ldb: g.outputPlane,
                          beta: b == nil ? 0 : 1,
                          c: imageOutput + group * g.outChannelsPerGroup * g.outputPlane, ldc: g.outputPlane)
                }
            }
        }
    }
}

/// Convolution backward: the gradients of the loss with respect to the input, the weight and
/// the bias, given the output's gradient. Each gradient is computed only when its buffer is given.
///
/// - Parameters:
///   - input: (batch, inChannels, H, W), the forward's input (needed for the weight gradient).
///   - weight: (outChannels, inChannels/groups, kH, kW) (needed for the input gradient).
///   - outputGradient: (batch, outChannels, oH, oW).
///   - inputGradient: (batch, inChannels, H, W), overwritten: dx = Wᵀ·dy folded back onto the image.
///   - weightGradient: (outChannels, inChannels/groups, kH, kW), overwritten: Σ_images dy · colᵀ.
///   - biasGradient: (outChannels), overwritten: Σ over images and positions of dy.
public func conv2DBackward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                           geometry g: Conv2DGeometry, inputGradient: UnsafeMutablePointer<Float>?,
                           weightGradient: UnsafeMutablePointer<Float>?, biasGradient: UnsafeMutablePointer<Float>?) {
    weightGradient?.update(repeating: 0, count: g.weightCount)
    biasGradient?.update(repeating: 0, count: g.outChannels)
    guard g.batch > 0 else { return }
    let chunks = _imageChunks(g.batch)
    let pointwise = g.isPointwise
    // Per chunk: its partial weight gradient, its partial bias gradient, then one col matrix
    // (the unfolded input for dW, reused for the unfolded input gradient).
    let partialSize = g.weightCount + g.outChannels
    let colSize = pointwise ? 0 : g.columnCount
    let stride = (partialSize + colSize + 15) / 16 * 16
    ScratchBuffers.withBuffer(count: chunks * stride) { scratch in
        nonisolated(unsafe) let (x, w, dy, dx, shared) = (input, weight, outputGradient, inputGradient, scratch)
        let wantsWeight = weightGradient != nil, wantsBias = biasGradient != nil
        Threading.parallelFor(chunks: chunks) { chunk in
            let images = g.batch * chunk / chunks..<g.batch * (chunk + 1) / chunks
            let partialWeight = shared + chunk * stride
            let partialBias = partialWeight + g.weightCount
            let col = partialBias + g.outChannels
            partialWeight.update(repeating: 0, count: partialSize)
            for image in images {
                let imageInput = x + image * g.inChannels * g.inputPlane
                let imageGradient = dy + image * g.outChannels * g.outputPlane
                if wantsWeight {
                    let unfolded: UnsafePointer<Float>
                    if pointwise {
                        unfolded = imageInput
                    } else {
                        conv2DUnfold(image: imageInput, geometry: g, col: col)
                        unfolded = UnsafePointer(col)
                    }
                    for group in 0..<g.groups {
                        // dW_g (Cout/g, depth) += dy_g (Cout/g, oH·oW) · col_gᵀ (oH·oW, depth)
                        sgemm(transposeA: false, transposeB: true, m: g.outChannelsPerGroup, n: g.groupDepth,
                              k: g.outputPlane, a: imageGradient + group * g.outChannelsPerGroup * g.outputPlane,
                              lda: g.outputPlane, b: unfolded + group * g.groupDepth * g.outputPlane, ldb: g.outputPlane,
                              beta: 1, c: partialWeight + group * g.outChannelsPerGroup * g.groupDepth, ldc: g.groupDepth)
                    }
                }
                if wantsBias {
                    for channel in 0..<g.outChannels {
                        partialBias[channel] += _sum(imageGradient + channel * g.outputPlane, count: g.outputPlane)
                    }
                }
                if let dx {
                    let imageInputGradient = dx + image * g.inChannels * g.inputPlane
                    // In the pointwise case the unfolded gradient is the input gradient itself.
                    let target = pointwise ? imageInputGradient : col
                    for group in 0..<g.groups {
                        // dcol_g (depth, oH·oW) = W_gᵀ (depth, Cout/g) · dy_g (Cout/g, oH·oW)
                        sgemm(transposeA: true, transposeB: false, m: g.groupDepth, n: g.outputPlane,
                              k: g.outChannelsPerGroup, a: w + group * g.outChannelsPerGroup * g.groupDepth,
                              lda: g.groupDepth, b: imageGradient + group * g.outChannelsPerGroup * g.outputPlane,
                              ldb: g.outputPlane, beta: 0, c: target + group * g.groupDepth * g.outputPlane,
                              ldc: g.outputPlane)
                    }
                    if !pointwise {
                        imageInputGradient.update(repeating: 0, count: g.inChannels * g.inputPlane)
                        conv2DFold(col: col, geometry: g, image: imageInputGradient)
                    }
                }
            }
        }
        // Partial sums in chunk order: the result does not depend on which thread ran what.
        for chunk in 0..<chunks {
            let partialWeight = scratch + chunk * stride
            if let weightGradient {
                for i in 0..<g.weightCount { weightGradient[i] += partialWeight[i] }
            }
            if let biasGradient {
                let partialBias = partialWeight + g.weightCount
                for channel in 0..<g.outChannels { biasGradient[channel] += partialBias[channel] }
            }
        }
    }
}
