import NormKitData
import NormKitNN

/// Fashion-MNIST and other IDX image sets feed `fit`, `evaluate` and `predict`
/// directly: pixels stay UInt8 in memory and are scaled to [0, 1] per batch.
/// Each example is a flat row of `rows · columns` values.
extension LabeledImages: BatchSource {
    public var featureShape: [Int] { [featureCount] }

    public func fillBatch(indices: ArraySlice<Int>, features: UnsafeMutableBufferPointer<Float>,
                          labels: UnsafeMutableBufferPointer<Int32>) {
        fillBatch(indices: indices, pixels: features, labels: labels)
    }
}

extension LabeledImages {
    /// The same images as (1, rows, columns) examples, the NCHW input of convolutional models.
    public var channelsFirst: ChannelsFirstImages { ChannelsFirstImages(images: self) }
}

/// Single-channel images batched as (N, 1, rows, columns) for convolutional models; the
/// values and their order are those of the flat rows `LabeledImages` gives.
public struct ChannelsFirstImages: BatchSource, Sendable {
    public let images: LabeledImages

    public var count: Int { images.count }
    public var featureShape: [Int] { [1, images.rows, images.columns] }

    public func fillBatch(indices: ArraySlice<Int>, features: UnsafeMutableBufferPointer<Float>,
                          labels: UnsafeMutableBufferPointer<Int32>) {
        images.fillBatch(indices: indices, pixels: features, labels: labels)
    }
}
