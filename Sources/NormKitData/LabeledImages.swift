import Synchronization

/// A set of single-channel images with one class label each, as MNIST-style datasets hold them.
///
/// Images stay as the `UInt8` values the files store (a quarter of the memory of
/// `Float`); `fillBatch(indices:pixels:labels:)` scales the images a batch needs
/// to [0, 1] as it copies them out.
public struct LabeledImages: Sendable, Equatable {
    /// The number of images (and of labels).
    public let count: Int
    /// The height of every image, in pixels.
    public let rows: Int
    /// The width of every image, in pixels.
    public let columns: Int
    /// Pixel intensities, `(count, rows, columns)` row-major: image `i` is
    /// `pixels[i * featureCount ..< (i + 1) * featureCount]`, 0 = background.
    public let pixels: [UInt8]
    /// The class of each image, `(count)`.
    public let labels: [UInt8]
    /// The largest label plus one, or 0 when there are no images. This is the number
    /// of classes only if the largest class occurs among these images.
    public let classCount: Int

    /// The number of values per image when it is flattened: `rows * columns`.
    public var featureCount: Int { rows * columns }

    /// Reads an images file and its labels file (IDX, plain or gzip).
    ///
    /// - Parameters:
    ///   - imagesFile: a rank-3 IDX file of unsigned bytes (magic 0x00000803), `(count, rows, columns)`.
    ///   - labelsFile: a rank-1 IDX file of unsigned bytes (magic 0x00000801), `(count)`.
    /// - Throws: `IDXError` from reading either file (a rank other than 3 or 1 is
    ///   `.wrongMagic`), or `.countMismatch` naming both files when their counts differ.
    public init(imagesFile: String, labelsFile: String) throws(IDXError) {
        let images = try IDXReader.read(path: imagesFile, expectedRank: 3)
        let labels = try IDXReader.read(path: labelsFile, expectedRank: 1)
        let imageCount = images.dimensions[0]
        let labelCount = labels.dimensions[0]
        guard imageCount == labelCount else {
            throw .countMismatch(
                imagesPath: imagesFile, imageCount: imageCount, labelsPath: labelsFile, labelCount: labelCount
            )
        }
        self.init(
            pixels: images.elements, labels: labels.elements,
            count: imageCount, rows: images.dimensions[1], columns: images.dimensions[2]
        )
    }

    /// Wraps images and labels already in memory (synthetic data, tests).
    ///
    /// - Parameters:
    ///   - pixels: `(count, rows, columns)` row-major; `pixels.count` must be `count * rows * columns`.
    ///   - labels: `(count)`; `labels.count` must be `count`.
    ///   - count, rows, columns: the shape; none may be negative.
    public init(pixels: [UInt8], labels: [UInt8], count: Int, rows: Int, columns: Int) {
        precondition(count >= 0 && rows >= 0 && columns >= 0, "negative shape (\(count), \(rows), \(columns))")
        precondition(
            pixels.count == count * rows * columns,
            "pixels.count is \(pixels.count), shape (\(count), \(rows), \(columns)) needs \(count * rows * columns)"
        )
        precondition(labels.count == count, "labels.count is \(labels.count), count is \(count)")
        self.count = count
        self.rows = rows
        self.columns = columns
        self.pixels = pixels
        self.labels = labels
        self.classCount = labels.max().map { Int($0) + 1 } ?? 0
    }

    /// The first `n` images and labels, or all of them if there are fewer than `n`.
    ///
    /// - Parameter n: how many to keep; must not be negative.
    public func prefix(_ n: Int) -> LabeledImages {
        precondition(n >= 0, "prefix length \(n) is negative")
        let kept = Swift.min(n, count)
        return LabeledImages(
            pixels: Array(pixels[0..<kept * featureCount]), labels: Array(labels[0..<kept]),
            count: kept, rows: rows, columns: columns
        )
    }

    /// Writes the images at `indices`, scaled into [0, 1], and their labels, in the order given.
    ///
    /// Row `b` of `pixels` (`featureCount` floats from `b * featureCount`) receives
    /// image `indices[b]` with every byte `v` written as `Float(v) * (1 / 255)`, so
    /// 0 → 0 and 255 → 1 exactly; `labels[b]` receives its label. Entries past the
    /// batch (when a buffer is larger than needed, as for a short last batch) are
    /// left untouched. Allocates nothing.
    ///
    /// - Parameters:
    ///   - indices: which images, each in `0..<count`; repeats are allowed.
    ///   - pixels: `(indices.count, featureCount)`; at least `indices.count * featureCount` floats.
    ///   - labels: `(indices.count)`; at least `indices.count` entries.
    ///
    /// Inlinable so that it is specialized for the caller's index collection: called
    /// unspecialized across modules, every `for index in indices` step went through
    /// the collection's witness table, whose `_read` accessor heap-allocates its
    /// coroutine frame — two mallocs per example, 64 per training step at batch 32.
    @inlinable
    public func fillBatch<Indices: Collection<Int>>(
        indices: Indices,
        pixels batchPixels: UnsafeMutableBufferPointer<Float>,
        labels batchLabels: UnsafeMutableBufferPointer<Int32>
    ) {
        let batchSize = indices.count
        let featureCount = featureCount
        precondition(
            batchPixels.count >= batchSize * featureCount,
            "pixel buffer holds \(batchPixels.count) floats, "
                + "\(batchSize) images of \(featureCount) need \(batchSize * featureCount)"
        )
        precondition(
            batchLabels.count >= batchSize,
            "label buffer holds \(batchLabels.count) entries, \(batchSize) images need \(batchSize)"
        )
        // Multiplying by the reciprocal vectorizes where division would not be as cheap;
        // Float(1/255) is rounded so that 255 · it still rounds to exactly 1.
        let scale: Float = 1 / 255
        pixels.withUnsafeBufferPointer { source in
            // Shuffled examples are scattered over the whole set (47 MB for Fashion-MNIST),
            // so each image's first bytes miss every cache. Loading one byte per cache line
            // of every image first lets those misses overlap; converted one image after
            // another they stalled in turn.
            if let base = source.baseAddress {
                var touched: UInt8 = 0
                for index in indices where index >= 0 && index < count {
                    touched |= _touchCacheLines(base + index * featureCount, count: featureCount)
                }
                _touchedBytes.store(touched, ordering: .relaxed)
            }
            labels.withUnsafeBufferPointer { sourceLabels in
                var row = 0
                for index in indices {
                    precondition(index >= 0 && index < count, "index \(index) is outside 0..<\(count)")
                    let image = source.baseAddress.map { $0 + index * featureCount }
                    let destination = batchPixels.baseAddress.map { $0 + row * featureCount }
                    if let image, let destination {
                        _scaleBytesToUnitInterval(image, into: destination, count: featureCount, scale: scale)
                    }
                    batchLabels[row] = Int32(sourceLabels[index])
                    row += 1
                }
            }
        }
    }
}

/// One byte of every 64-byte cache line of `count` bytes at `bytes`, or-ed together:
/// loads that bring the lines in, independent of each other so their misses overlap.
@inline(__always) @usableFromInline
func _touchCacheLines(_ bytes: UnsafePointer<UInt8>, count: Int) -> UInt8 {
    var touched: UInt8 = 0
    for offset in stride(from: 0, to: count, by: 64) { touched |= bytes[offset] }
    return touched
}

/// Where `fillBatch` stores what it touched, so that the compiler keeps the loads.
@usableFromInline let _touchedBytes = Atomic<UInt8>(0)

/// `destination[i] = Float(source[i]) * scale` for `i` in `0..<count`.
///
/// A separate function over raw pointers with no aliasing between the two types,
/// so the loop compiles to packed byte-to-float conversions and multiplies.
@inline(__always) @usableFromInline
func _scaleBytesToUnitInterval(
    _ source: UnsafePointer<UInt8>, into destination: UnsafeMutablePointer<Float>, count: Int, scale: Float
) {
    for i in 0..<count {
        destination[i] = Float(source[i]) * scale
    }
}
