import Dispatch
import NormKit
import Synchronization

/// A batch-norm benchmark shape: (N, C) or (N, C, H, W), stored channels-first
/// (NCHW) or channels-last (NHWC), as PyTorch's `torch_bn_kernels.py` names them.
struct BatchNormShape: Sendable {
    var name: String
    var shape: [Int]
    var channelsLast: Bool

    static let all: [BatchNormShape] = [
        BatchNormShape(name: "1d-32x64", shape: [32, 64], channelsLast: false),
        BatchNormShape(name: "2d-64x64x56x56-nchw", shape: [64, 64, 56, 56], channelsLast: false),
        BatchNormShape(name: "2d-64x64x56x56-channels-last", shape: [64, 64, 56, 56], channelsLast: true),
        BatchNormShape(name: "2d-128x256x14x14-nchw", shape: [128, 256, 14, 14], channelsLast: false),
        BatchNormShape(name: "2d-128x256x14x14-channels-last", shape: [128, 256, 14, 14], channelsLast: true),
    ]

    var elementCount: Int { shape.reduce(1, *) }
    var channels: Int { shape[1] }
    /// The kernels' (outer, channels, inner) view.
    var layout: (outer: Int, channels: Int, inner: Int) {
        if shape.count == 2 || channelsLast {
            return (elementCount / channels, channels, 1)
        }
        return (shape[0], channels, elementCount / (shape[0] * channels))
    }
}

/// Buffers for one shape's batch-norm kernels, allocated once.
final class BatchNormWork: @unchecked Sendable {
    let layout: (outer: Int, channels: Int, inner: Int)
    let x, dy, y, dx: UnsafeMutableBufferPointer<Float>
    let gamma, beta, center, scale, shift, invstd, residual, dGamma, dBeta: UnsafeMutableBufferPointer<Float>
    let mean, variance: UnsafeMutableBufferPointer<Double>
    let epsilon = 1e-5

    init(_ shape: BatchNormShape) {
        layout = shape.layout
        let count = shape.elementCount, channels = shape.channels
        func floats(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            buffer.initialize(repeating: 0)
            return buffer
        }
        (x, dy, y, dx) = (floats(count), floats(count), floats(count), floats(count))
        (gamma, beta, center, scale, shift) = (floats(channels), floats(channels), floats(channels), floats(channels), floats(channels))
        (invstd, residual, dGamma, dBeta) = (floats(channels), floats(channels), floats(channels), floats(channels))
        mean = .allocate(capacity: channels); mean.initialize(repeating: 0)
        variance = .allocate(capacity: channels); variance.initialize(repeating: 0)
        var generator = SeededGenerator(seed: 5)
        for i in 0..<count {
            x[i] = Float.random(in: -2...3, using: &generator)
            dy[i] = Float.random(in: -1...1, using: &generator)
        }
        for c in 0..<channels {
            gamma[c] = Float.random(in: 0.5...1.5, using: &generator)
            beta[c] = Float.random(in: -1...1, using: &generator)
        }
        trainingForward()   // statistics for inference and backward
    }

    /// Statistics, folded constants and y, as `batchNorm` in training mode.
    func trainingForward() {
        let gamma = UnsafeBufferPointer(self.gamma), beta = UnsafeBufferPointer(self.beta), epsilon = self.epsilon
        let (center, scale, shift, invstd, residual) = (self.center, self.scale, self.shift, self.invstd, self.residual)
        batchNormTrainingForward(UnsafeBufferPointer(x), outer: layout.outer, channels: layout.channels,
                                 inner: layout.inner, mean: mean, variance: variance, output: y) { c, mu, sigma2 in
            let s = 1 / (sigma2 + epsilon).squareRoot()
            let a = Double(gamma[c]) * s
            let rounded = Float(mu)
            center[c] = rounded; scale[c] = Float(a); invstd[c] = Float(s)
            residual[c] = Float(mu - Double(rounded))
            shift[c] = Float(Double(beta[c]) - (mu - Double(rounded)) * a)
            return BatchNormChannelConstants(center: rounded, scale: Float(a), shift: shift[c])
        }
    }

    /// y with fixed per-channel constants (running statistics).
    func inference() {
        batchNormApply(UnsafeBufferPointer(x), outer: layout.outer, channels: layout.channels, inner: layout.inner,
                       scale: UnsafeBufferPointer(scale), shift: UnsafeBufferPointer(shift),
                       center: UnsafeBufferPointer(center), output: y)
    }

    /// dx, dγ, dβ with batch statistics, dx into its own buffer.
    func backward() { backward(writingInputGradientTo: dx) }

    /// dx written over dy, as batch norm's pullback does when it holds dy's only
    /// reference (the autodiff path of a training step). Call `makeGainsUnit()` once
    /// first: repeating the backward in place then maps dy to itself up to rounding.
    func backwardInPlace() { backward(writingInputGradientTo: dy) }

    private func backward(writingInputGradientTo inputGradient: UnsafeMutableBufferPointer<Float>) {
        batchNormBackward(input: UnsafeBufferPointer(x), outputGradient: UnsafeBufferPointer(dy),
                          outer: layout.outer, channels: layout.channels, inner: layout.inner,
                          mean: UnsafeBufferPointer(center), inverseStandardDeviation: UnsafeBufferPointer(invstd),
                          gamma: UnsafeBufferPointer(gamma), statisticsFromBatch: true,
                          meanResidual: UnsafeBufferPointer(residual), inputGradient: inputGradient,
                          gammaGradient: dGamma, betaGradient: dBeta)
    }

    /// Sets γ = 1/invstd per channel, so γ·invstd = 1 and the backward is a projection
    /// (dx = dy minus its mean and its x̂ component): applied to its own output it
    /// changes nothing but rounding, so thousands of in-place iterations neither decay
    /// into subnormals (which are slow) nor overflow.
    func makeGainsUnit() {
        for c in 0..<gamma.count { gamma[c] = 1 / invstd[c] }
        backwardInPlace()   // dy becomes its projection: the fixed point later iterations keep
    }

    /// y ← x with memcpy, split across `Threading.count` threads: the bandwidth ceiling for inference.
    func copy() {
        let count = x.count, source = x.baseAddress!, destination = y.baseAddress!
        let chunks = Threading.count
        Threading.parallelFor(chunks: chunks) { chunk in
            let start = count * chunk / chunks, end = count * (chunk + 1) / chunks
            UnsafeMutableRawPointer(destination + start).copyMemory(
                from: source + start, byteCount: (end - start) * MemoryLayout<Float>.stride)
        }
    }
}

/// C (m, n) = A (m, k) · B (k, n), buffers allocated once.
final class GEMMWork: @unchecked Sendable {
    let m, k, n: Int
    let a, b, c: UnsafeMutableBufferPointer<Float>

    init(m: Int, k: Int, n: Int) {
        (self.m, self.k, self.n) = (m, k, n)
        a = .allocate(capacity: m * k); b = .allocate(capacity: k * n); c = .allocate(capacity: m * n)
        var generator = SeededGenerator(seed: 7)
        for i in 0..<a.count { a[i] = Float.random(in: -1...1, using: &generator) }
        for i in 0..<b.count { b[i] = Float.random(in: -1...1, using: &generator) }
        c.initialize(repeating: 0)
    }

    func run(_ implementation: SGEMMImplementation) {
        sgemm(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a.baseAddress!, lda: k,
              b: b.baseAddress!, ldb: n, c: c.baseAddress!, ldc: n, implementation: implementation)
    }
}

/// One training step (forward, backward, Adam 1e-3) of a classifier on a fixed random batch:
/// inputs uniform in 0…1 of `inputShape`, labels in 0..<10. `run()` drives the general
/// autodiff path (graph, pullbacks, a tensor per op); `trainOnBatch()` Keras'
/// `train_on_batch`, which runs `fit`'s fused step when the model allows it.
final class TrainingStep: @unchecked Sendable {
    let model: Module
    let optimizer: Adam
    let loss: any Loss
    let inputs: Tensor
    let labels: [Int]

    init(model: Module, loss: any Loss, inputShape: [Int], dataSeed: UInt64) {
        self.model = model
        self.loss = loss
        model.train()
        optimizer = Adam(model.parameters(), learningRate: 1e-3)
        var generator = SeededGenerator(seed: dataSeed)
        inputs = Tensor((0..<inputShape.reduce(1, *)).map { _ in Float.random(in: 0...1, using: &generator) },
                        shape: inputShape)
        labels = (0..<inputShape[0]).map { _ in Int.random(in: 0..<10, using: &generator) }
        model.compile(optimizer: optimizer, loss: loss)
    }

    /// The seed MLP (784 → 64 → BN → ReLU → 10, softmax, sparse categorical cross-entropy).
    static func seedMLP(batchSize: Int) -> TrainingStep {
        GlobalRandom.seed(1)
        return TrainingStep(model: SeedMLP(), loss: SparseCategoricalCrossentropy(), inputShape: [batchSize, 784],
                            dataSeed: 11)
    }

    /// The seed CNN (issue 4's network, as `torch_cnn.py`: two conv–BN–ReLU–pool blocks,
    /// 3136 → 128 → BN → ReLU → 10, cross-entropy on logits) on (batchSize, 1, 28, 28) images.
    static func seedCNN(batchSize: Int) -> TrainingStep {
        TrainingStep(model: SeedCNN(generator: SeededGenerator(seed: 3)), loss: CrossEntropyLoss(),
                     inputShape: [batchSize, 1, 28, 28], dataSeed: 13)
    }

    func run() {
        optimizer.zeroGrad()
        // swiftlint:disable:next force_try
        let value = loss(try! model(inputs), labels)
        value.backward()
        optimizer.step()
    }

    /// `model.trainOnBatch(x:y:)` on the batch. The first call builds the fused
    /// step's buffers (the warm-up iterations absorb it); later calls reuse them.
    func trainOnBatch() {
        // swiftlint:disable:next force_try
        _ = try! model.trainOnBatch(x: inputs, y: labels)
    }
}

/// What handing chunks to other threads costs: NormKit's worker pool
/// (`Threading.parallelFor`) against `DispatchQueue.concurrentPerform`, which it replaced.
final class ThreadingWork: Sendable {
    private let started = Atomic<Int>(0)

    /// Two empty chunks: the whole cost of a call whose chunks are too small for a
    /// second thread to get one before the caller has run both.
    func poolEmpty() {
        Threading.parallelFor(chunks: 2) { _ in }
    }

    func dispatchEmpty() {
        DispatchQueue.concurrentPerform(iterations: 2) { _ in }
    }

    /// Two chunks that each wait until the other has started, so a second thread
    /// must take one: publishing a job, a worker's claim and the caller's wait
    /// for it. A chunk gives up waiting after 1 ms (with one thread, or when no
    /// worker comes), so this cannot hang.
    func poolHandoff() {
        started.store(0, ordering: .relaxed)
        Threading.parallelFor(chunks: 2) { _ in self.meet() }
    }

    func dispatchHandoff() {
        started.store(0, ordering: .relaxed)
        DispatchQueue.concurrentPerform(iterations: 2) { _ in self.meet() }
    }

    private func meet() {
        started.add(1, ordering: .relaxed)
        let deadline = ContinuousClock.now + .milliseconds(1)
        var polls = 0
        while started.load(ordering: .relaxed) < 2 {
            polls += 1
            if polls % 64 == 0 && ContinuousClock.now > deadline { return }
        }
    }
}
