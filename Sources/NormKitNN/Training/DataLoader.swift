import NormKitCore

/// Batches of a data set for a hand-written training loop (PyTorch's `DataLoader`).
///
/// Iterating yields `(inputs, labels)`: inputs (batch, featureShape…) and
/// integer labels. With `shuffle`, every iteration visits the examples in a
/// new order drawn from the loader's generator, so two loaders with the same
/// seed yield the same batches.
public final class DataLoader<Source: BatchSource>: Sequence {
    public let source: Source
    public let batchSize: Int
    public let shuffle: Bool
    public let dropsLastPartialBatch: Bool
    private var generator: SeededGenerator

    public init(_ source: Source, batchSize: Int, shuffle: Bool = false, dropsLastPartialBatch: Bool = false,
                generator: SeededGenerator? = nil) {
        precondition(batchSize >= 1, "DataLoader: batchSize must be at least 1, got \(batchSize)")
        self.source = source
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropsLastPartialBatch = dropsLastPartialBatch
        self.generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
    }

    /// Batches per pass.
    public var batchCount: Int {
        dropsLastPartialBatch ? source.count / batchSize : (source.count + batchSize - 1) / batchSize
    }

    public struct Iterator: IteratorProtocol {
        let source: Source
        let order: [Int]
        let batchSize: Int
        let end: Int
        var position = 0
        var buffers: BatchBuffers

        public mutating func next() -> (Tensor, [Int])? {
            guard position < end else { return nil }
            let indices = order[position..<Swift.min(position + batchSize, end)]
            position += batchSize
            return buffers.load(source, indices: indices)
        }
    }

    public func makeIterator() -> Iterator {
        var order = Array(0..<source.count)
        if shuffle { order.shuffle(using: &generator) }
        let end = dropsLastPartialBatch ? source.count / batchSize * batchSize : source.count
        return Iterator(source: source, order: order, batchSize: batchSize, end: end,
                        buffers: BatchBuffers(featureShape: source.featureShape, capacity: batchSize))
    }
}
