import NormKitCore

/// Labeled examples that can be copied into a batch buffer.
///
/// `fit`, `evaluate` and `predict` draw batches through this protocol, so a
/// data set can keep its own compact storage (Fashion-MNIST stays UInt8 and
/// is scaled to [0, 1] per batch) and batches are written into reused buffers.
public protocol BatchSource {
    /// Number of examples.
    var count: Int { get }
    /// The shape of one example, without the batch axis (e.g. [784]).
    var featureShape: [Int] { get }
    /// Writes the examples at `indices`, one after another, into `features`
    /// (`indices.count · featureShape.product` values) and their labels into `labels`.
    func fillBatch(indices: ArraySlice<Int>, features: UnsafeMutableBufferPointer<Float>,
                   labels: UnsafeMutableBufferPointer<Int32>)
}

/// In-memory features (N, …) and integer labels, e.g. Keras' `x, y` arrays.
public struct TensorDataset: BatchSource {
    public let features: Tensor
    public let labels: [Int]

    public init(features: Tensor, labels: [Int]) {
        precondition(features.rank >= 1 && features.shape[0] == labels.count,
                     "TensorDataset: features \(features.shape) and \(labels.count) labels differ in count")
        self.features = features.detached()
        self.labels = labels
    }

    public var count: Int { labels.count }
    public var featureShape: [Int] { Array(features.shape.dropFirst()) }

    public func fillBatch(indices: ArraySlice<Int>, features out: UnsafeMutableBufferPointer<Float>,
                          labels labelsOut: UnsafeMutableBufferPointer<Int32>) {
        let size = featureShape.reduce(1, *)
        precondition(out.count >= indices.count * size && labelsOut.count >= indices.count,
                     "fillBatch: buffers of \(out.count) features and \(labelsOut.count) labels for \(indices.count) examples of size \(size)")
        features.withUnsafeBufferPointer { source in
            for (position, index) in indices.enumerated() {
                (out.baseAddress! + position * size).update(from: source.baseAddress! + index * size, count: size)
                labelsOut[position] = Int32(labels[index])
            }
        }
    }
}

/// Reusable batch buffers: one allocation for the run, not one per step.
struct BatchBuffers {
    var features: [Float]
    var labels: [Int32]
    let featureShape: [Int]
    let exampleSize: Int

    init(featureShape: [Int], capacity: Int) {
        self.featureShape = featureShape
        self.exampleSize = featureShape.reduce(1, *)
        features = [Float](repeating: 0, count: capacity * exampleSize)
        labels = [Int32](repeating: 0, count: capacity)
    }

    /// The batch at `indices` as a tensor (batch, featureShape…) and its labels.
    mutating func load(_ source: some BatchSource, indices: ArraySlice<Int>) -> (Tensor, [Int]) {
        let count = indices.count
        features.withUnsafeMutableBufferPointer { f in
            labels.withUnsafeMutableBufferPointer { l in
                source.fillBatch(indices: indices, features: UnsafeMutableBufferPointer(rebasing: f[0..<count * exampleSize]),
                                 labels: UnsafeMutableBufferPointer(rebasing: l[0..<count]))
            }
        }
        let size = exampleSize
        let batch = Tensor(shape: [count] + featureShape) { out in
            features.withUnsafeBufferPointer { out.baseAddress!.update(from: $0.baseAddress!, count: count * size) }
        }
        return (batch, labels[0..<count].map { Int($0) })
    }
}
