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
