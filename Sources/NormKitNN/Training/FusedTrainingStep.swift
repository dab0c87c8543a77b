import NormKitCore

/// Models whose forward is a plain chain of layers, which `fit` may run as a
/// `FusedTrainingStep`. `nil` when the chain holds a layer the fused step does
/// not know (the general autodiff step runs then).
protocol LayerChain {
    var chainedLayers: [FusedTrainingStep.Layer]? { get }
}

/// The training step `fit` runs when the model is a chain of layers it knows —
/// Linear, plain batch norm on (batch, features), ReLU, Flatten, a final
/// Softmax — and the loss is a cross-entropy: forward, loss, backward and the
/// optimizer's update over buffers allocated once per `fit`, with no autodiff
/// graph, no closures and no tensors created per step.
///
/// Why: the seed MLP's arithmetic is ~6.5 MFLOP per step (~50 µs), and the
/// general path spent most of its time around it — a graph node, a pullback
/// closure and fresh tensors per op, per step. This step computes exactly what
/// that path computes, with the same kernels in the same order (`linearForward` & co.,
/// `batchNormStatistics`/`Apply`/`Backward`, `softmaxForward`/`Backward`, the
/// losses' formulas), so a model trains to the same values either way
/// (`FusedTrainingStepTests` checks that bit for bit).
///
/// Buffers: one output and one gradient per layer, `capacity` rows each; the
/// parameter gradients are tensors the step keeps and hands to each
/// `Parameter` (shared, not copied). Between steps the optimizer has cleared
/// them (`zeroGrad`), so the step writes into them in place; if anything else
/// still holds one, copy-on-write gives the step a fresh buffer and the other
/// holder keeps its values.
final class FusedTrainingStep {
    /// A layer of the chain, as the fused step runs it.
    enum Layer {
        case linear(Linear)
        case batchNorm(BatchNorm)
        case relu
        case flatten
        case softmax
    }

    /// What each stage computes, with its sizes and parameters resolved.
    private enum Stage {
        case linear(weight: Parameter, bias: Parameter?, inFeatures: Int, outFeatures: Int)
        case batchNorm(BatchNorm, BatchNormScratch)
        case relu
        case softmax
    }

    /// Per-feature values a batch-norm stage keeps from forward to backward.
    private final class BatchNormScratch {
        let channels: Int
        let exactMean: UnsafeMutableBufferPointer<Double>, exactVariance: UnsafeMutableBufferPointer<Double>
        let meanResidual: UnsafeMutableBufferPointer<Float>
        let scale: UnsafeMutableBufferPointer<Float>, shift: UnsafeMutableBufferPointer<Float>
        let gammaGradient: UnsafeMutableBufferPointer<Float>, betaGradient: UnsafeMutableBufferPointer<Float>
        /// μ (rounded to Float), σ² and invstd: what normalized the last batch of
        /// `count` rows. Updated in place (separate properties, so that two can be
        /// open for writing at once) and copied to the layer by `publishStatistics`.
        var mean: [Float], variance: [Float], inverseStandardDeviation: [Float]
        var count = 0

        /// The statistics as the layer reports them (shares the arrays: no copy), for
        /// `updateRunningStatistics`, which reads them and lets them go.
        var statistics: BatchNormStatistics {
            BatchNormStatistics(mean: mean, variance: variance, inverseStandardDeviation: inverseStandardDeviation,
                                count: count)
        }

        /// Writes these statistics into `target`'s arrays, in place when they are
        /// unique and of the right size (see `publishStatistics`).
        func copy(into target: inout BatchNormStatistics) {
            func overwrite(_ array: inout [Float], with source: [Float]) {
                if array.count != source.count { array = [Float](repeating: 0, count: source.count) }
                array.withUnsafeMutableBufferPointer { array in
                    source.withUnsafeBufferPointer { _ = array.update(fromContentsOf: $0) }
                }
            }
            overwrite(&target.mean, with: mean)
            overwrite(&target.variance, with: variance)
            overwrite(&target.inverseStandardDeviation, with: inverseStandardDeviation)
            target.count = count
        }

        init(channels: Int) {
            self.channels = channels
            exactMean = .allocate(capacity: channels)
            exactVariance = .allocate(capacity: channels)
            meanResidual = .allocate(capacity: channels)
            scale = .allocate(capacity: channels)
            shift = .allocate(capacity: channels)
            gammaGradient = .allocate(capacity: channels)
            betaGradient = .allocate(capacity: channels)
            mean = [Float](repeating: 0, count: channels)
            variance = mean
            inverseStandardDeviation = mean
        }

        deinit {
            for buffer in [meanResidual, scale, shift, gammaGradient, betaGradient] { buffer.deallocate() }
            exactMean.deallocate()
            exactVariance.deallocate()
        }
    }

    /// How the loss reads the last stage's output.
    private enum LossRule {
        /// `crossEntropy(logits:labels:)`.
        case logits
        /// `sparseCategoricalCrossentropy(probabilities:labels:epsilon:)`.
        case probabilities(epsilon: Float)
    }

    /// A parameter and the gradient tensor the step reuses for it.
    private struct ParameterGradient {
        let parameter: Parameter
        var gradient: Tensor
    }

    private let stages: [Stage]
    private let lossRule: LossRule
    /// Rows a step may hold.
    let capacity: Int
    /// Features per row entering stage i (`widths[stages.count]`: the output's).
    private let widths: [Int]
    /// `values[i]`: the input of stage i, `values[stages.count]` the output.
    private let values: [UnsafeMutablePointer<Float>]
    /// `gradients[i]`: the loss's gradient with respect to `values[i]` (i ≥ 1).
    private let gradients: [UnsafeMutablePointer<Float>]
    private let labels: UnsafeMutableBufferPointer<Int32>
    /// Log-probabilities (logits rule; unused by the probabilities rule).
    private let lossScratch: UnsafeMutablePointer<Float>
    /// Per stage: the indices in `parameterGradients` of its weight and bias (or γ and β).
    private let parameterSlots: [(weight: Int?, bias: Int?)]
    private var parameterGradients: [ParameterGradient]

    /// The fused step for `model` trained on `featureShape` examples with `loss`,
    /// or nil when some part is not one it runs (then `fit` uses the general step).
    init?(model: Module, loss: any Loss, featureShape: [Int], capacity: Int) {
        guard capacity >= 1, let chain = (model as? LayerChain)?.chainedLayers, !chain.isEmpty else { return nil }
        // Examples must reach the first layer as (batch, features): flat already, or through Flatten.
        var width = featureShape.reduce(1, *)
        guard featureShape.count == 1 || { if case .flatten = chain[0] { return true } else { return false } }() else {
            return nil
        }
        var stages: [Stage] = [], widths = [width]
        var slots: [(weight: Int?, bias: Int?)] = [], parameterGradients: [ParameterGradient] = []
        func slot(_ parameter: Parameter?) -> Int? {
            guard let parameter, parameter.isTrainable else { return nil }
            parameterGradients.append(ParameterGradient(parameter: parameter, gradient: .zeros(parameter.shape)))
            return parameterGradients.count - 1
        }
        for (index, layer) in chain.enumerated() {
            switch layer {
            case .flatten:
                continue
            case .linear(let linear):
                guard let weight = linear.weight, weight.shape == [linear.outFeatures, width] else { return nil }
                stages.append(.linear(weight: weight, bias: linear.bias, inFeatures: width, outFeatures: linear.outFeatures))
                slots.append((slot(weight), slot(linear.bias)))
                width = linear.outFeatures
            case .batchNorm(let layer):
                // Plain batch norm with batch statistics over (batch, features) only.
                guard layer.featureCount == width, layer.featureAxis == 1 || layer.featureAxis == -1,
                      layer.ghostBatchSize == nil, layer.renormalization == nil, layer.usesBatchStatistics,
                      layer.acceptedRanks?.ranks.contains(2) ?? true else { return nil }
                stages.append(.batchNorm(layer, BatchNormScratch(channels: width)))
                slots.append((slot(layer.weight), slot(layer.bias)))
            case .relu:
                stages.append(.relu)
                slots.append((nil, nil))
            case .softmax:
                // Only as the last layer, feeding a loss that takes probabilities.
                guard index == chain.count - 1 else { return nil }
                stages.append(.softmax)
                slots.append((nil, nil))
            }
            widths.append(width)
        }
        let endsInSoftmax: Bool = if case .softmax? = stages.last { true } else { false }
        switch loss {
        case is CrossEntropyLoss:
            guard !endsInSoftmax else { return nil }   // the general path warns about softmax twice
            lossRule = .logits
        case let loss as SparseCategoricalCrossentropy:
            guard loss.fromLogits != endsInSoftmax else { return nil }
            lossRule = loss.fromLogits ? .logits : .probabilities(epsilon: 1e-7)
        default:
            return nil
        }
        guard !stages.isEmpty else { return nil }
        self.stages = stages
        self.widths = widths
        self.capacity = capacity
        self.parameterSlots = slots
        self.parameterGradients = parameterGradients
        func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
            UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: max(count, 1))
        }
        values = widths.map { buffer(capacity * $0) }
        gradients = widths.map { buffer(capacity * $0) }
        labels = .allocate(capacity: capacity)
        lossScratch = buffer(capacity * widths.last!)
    }

    deinit {
        for pointer in values + gradients + [lossScratch] { UnsafeMutableRawPointer(pointer).deallocate() }
        labels.deallocate()
    }

    /// Whether the layers are still set up as when this step was built. A callback
    /// may change them during `fit` (`freeze()` a batch norm, make a parameter
    /// non-trainable); the fused step then stands aside for the general one.
    private var layersUnchanged: Bool {
        func matches(_ parameter: Parameter?, _ slot: Int?) -> Bool { (parameter?.isTrainable ?? false) == (slot != nil) }
        for (stage, slots) in zip(stages, parameterSlots) {
            switch stage {
            case let .linear(weight, bias, _, _):
                guard matches(weight, slots.weight), matches(bias, slots.bias) else { return false }
            case let .batchNorm(layer, _):
                guard layer.usesBatchStatistics, matches(layer.weight, slots.weight), matches(layer.bias, slots.bias)
                else { return false }
            case .relu, .softmax:
                continue
            }
        }
        return true
    }

    /// One training step on the examples of `data` at `indices` (at most `capacity`):
    /// forward, loss, `optimizer.zeroGrad()`, backward, `optimizer.step()` — the
    /// order `fit`'s general step uses. Returns the batch's mean loss and how
    /// many arg-max predictions equal the label, or nil (nothing done) when the
    /// layers no longer are what the step was built for.
    func step(_ data: some BatchSource, indices: ArraySlice<Int>, optimizer: any Optimizer) throws -> (loss: Float, correct: Int)? {
        guard layersUnchanged else { return nil }
        let rows = indices.count
        precondition(rows >= 1 && rows <= capacity, "FusedTrainingStep: \(rows) examples for a capacity of \(capacity)")
        data.fillBatch(indices: indices, features: UnsafeMutableBufferPointer(start: values[0], count: rows * widths[0]),
                       labels: UnsafeMutableBufferPointer(rebasing: labels[0..<rows]))
        let classes = widths[stages.count]
        for row in 0..<rows where labels[row] < 0 || Int(labels[row]) >= classes {
            throw FitError.labelOutOfRange(operation: "fit", label: Int(labels[row]), classes: classes)
        }
        return try run(rows: rows, optimizer: optimizer)
    }

    /// The same step on a batch given as a tensor and its labels (`trainOnBatch`):
    /// the rows of `features` are copied into the first buffer, so nothing is allocated.
    ///
    /// - Parameters:
    ///   - features: (rows, featureShape…) with 1 ≤ rows ≤ `capacity`; the caller
    ///     has checked that the example shape is the one the step was built for.
    ///   - labels: `rows` class indices; each must be in 0..<classes (checked here,
    ///     before anything changes, and before narrowing to the step's `Int32`s;
    ///     `FitError.labelOutOfRange` otherwise).
    func step(features: Tensor, labels: [Int], optimizer: any Optimizer) throws -> (loss: Float, correct: Int)? {
        guard layersUnchanged else { return nil }
        let rows = labels.count
        precondition(rows >= 1 && rows <= capacity && features.scalarCount == rows * widths[0],
                     "FusedTrainingStep: \(rows) labels and features \(features.shape) for a capacity of \(capacity) "
                     + "examples of \(widths[0]) values")
        let classes = widths[stages.count]
        try _checkLabels(labels, classes: classes, operation: "trainOnBatch")
        for (row, label) in labels.enumerated() { self.labels[row] = Int32(label) }
        features.withUnsafeBufferPointer { values[0].update(from: $0.baseAddress!, count: rows * widths[0]) }
        return try run(rows: rows, optimizer: optimizer)
    }

    /// Forward, loss, backward and update on the `rows` examples already in
    /// `values[0]` and `labels`.
    private func run(rows: Int, optimizer: any Optimizer) throws -> (loss: Float, correct: Int) {
        for index in stages.indices { try forward(stage: index, rows: rows) }
        let loss = lossAndGradient(rows: rows)
        let correct = correctPredictions(rows: rows)
        optimizer.zeroGrad()
        for index in stages.indices.reversed() { backward(stage: index, rows: rows) }
        for index in parameterGradients.indices {
            parameterGradients[index].parameter.node.accumulateGradient(parameterGradients[index].gradient)
        }
        optimizer.step()
        return (loss, correct)
    }

    /// Hands each batch-norm layer the statistics of the last batch (`lastBatchStatistics`),
    /// as its own forward would have left them. `fit` calls it once per epoch,
    /// `trainOnBatch` after every step.
    ///
    /// The values are copied into the layer's own arrays, in place once those have
    /// the right size: sharing the step's arrays would make its next batch copy
    /// them (copy-on-write), an allocation per step. A copy someone kept of an
    /// earlier `lastBatchStatistics` keeps its values, by the same copy-on-write.
    func publishStatistics() {
        for stage in stages {
            guard case let .batchNorm(layer, scratch) = stage, scratch.count > 0 else { continue }
            if layer.lastBatchStatistics == nil {
                layer.lastBatchStatistics = BatchNormStatistics(mean: [], variance: [], inverseStandardDeviation: [], count: 0)
            }
            scratch.copy(into: &layer.lastBatchStatistics!)
            if layer.lastGhostBatchStatistics.count != 1 {
                layer.lastGhostBatchStatistics = [BatchNormStatistics(mean: [], variance: [], inverseStandardDeviation: [],
                                                                      count: 0)]
            }
            scratch.copy(into: &layer.lastGhostBatchStatistics[0])
            if !layer.lastRenormalizationCorrections.isEmpty { layer.lastRenormalizationCorrections = [] }
        }
    }

    // MARK: Forward

    private func forward(stage index: Int, rows: Int) throws {
        let x = values[index], y = values[index + 1]
        let inWidth = widths[index], outWidth = widths[index + 1]
        switch stages[index] {
        case let .linear(weight, bias, inFeatures, outFeatures):
            // y = x · Wᵀ + b, as `linear(_:weight:bias:)`.
            weight.value.withUnsafeBufferPointer { w in
                func run(_ b: UnsafePointer<Float>?) {
                    linearForward(input: x, rows: rows, inFeatures: inFeatures, weight: w.baseAddress!,
                                  outFeatures: outFeatures, bias: b, output: y)
                }
                if let bias { bias.value.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        case let .batchNorm(layer, scratch):
            guard rows > 1 else { throw BatchNormError.singleValuePerChannel(layer: layer.description, shape: [rows, inWidth]) }
            try batchNormForward(layer, scratch, x: x, y: y, rows: rows)
        case .relu:
            for i in 0..<rows * inWidth { y[i] = max(x[i], 0) }
        case .softmax:
            softmaxForward(UnsafeBufferPointer(start: x, count: rows * inWidth), rows: rows, classes: inWidth,
                           logarithm: false, output: UnsafeMutableBufferPointer(start: y, count: rows * outWidth))
        }
    }

    /// Batch statistics, the folded apply and the running estimates, as `batchNorm`
    /// with one group and `BatchNorm.forward` compute them.
    private func batchNormForward(_ layer: BatchNorm, _ scratch: BatchNormScratch, x: UnsafeMutablePointer<Float>,
                                  y: UnsafeMutablePointer<Float>, rows: Int) throws {
        let channels = scratch.channels
        let input = UnsafeBufferPointer(start: x, count: rows * channels)
        batchNormStatistics(input, outer: rows, channels: channels, inner: 1,
                            mean: scratch.exactMean, variance: scratch.exactVariance)
        let epsilon = Double(layer.epsilon)
        let gamma = layer.weight?.value, beta = layer.bias?.value
        scratch.count = rows
        scratch.mean.withUnsafeMutableBufferPointer { mean in
            scratch.variance.withUnsafeMutableBufferPointer { variance in
                scratch.inverseStandardDeviation.withUnsafeMutableBufferPointer { invstd in
                    for c in 0..<channels {
                        mean[c] = Float(scratch.exactMean[c])
                        variance[c] = Float(scratch.exactVariance[c])
                        invstd[c] = Float(1 / (Double(variance[c]) + epsilon).squareRoot())
                        scratch.meanResidual[c] = Float(scratch.exactMean[c] - Double(mean[c]))
                    }
                }
            }
        }
        // y = (x − μ_f)·a + (β − (μ − μ_f)·a), a = γ·invstd: the constants `batchNorm`
        // folds, with its r = 1, d = 0 spelled out so that the rounding is the same.
        gamma.withUnsafeBufferPointer(orOnes: channels) { g in
            beta.withUnsafeBufferPointer(orZeros: channels) { b in
                scratch.mean.withUnsafeBufferPointer { mean in
                    scratch.inverseStandardDeviation.withUnsafeBufferPointer { invstd in
                        for c in 0..<channels {
                            let gc = Double(g[c]), a = gc * 1 * Double(invstd[c])
                            scratch.scale[c] = Float(a)
                            scratch.shift[c] = Float(Double(b[c]) + gc * 0 - (scratch.exactMean[c] - Double(mean[c])) * a)
                        }
                    }
                }
            }
        }
        scratch.mean.withUnsafeBufferPointer { mean in
            batchNormApply(input, outer: rows, channels: channels, inner: 1, scale: UnsafeBufferPointer(scratch.scale),
                           shift: UnsafeBufferPointer(scratch.shift), center: mean,
                           output: UnsafeMutableBufferPointer(start: y, count: rows * channels))
        }
        if layer.updatesRunningStatistics { layer.updateRunningStatistics(with: scratch.statistics, groupCount: 1) }
    }

    // MARK: Loss

    /// The batch's mean loss; writes its gradient with respect to the last output
    /// into `gradients[stages.count]` (the pullbacks of the two loss functions).
    private func lossAndGradient(rows: Int) -> Float {
        let classes = widths[stages.count]
        let output = values[stages.count], gradient = gradients[stages.count]
        let scale = 1 / Float(rows)
        var total = 0.0
        let labels = labels
        switch lossRule {
        case .logits:
            let logProbabilities = UnsafeMutableBufferPointer(start: lossScratch, count: rows * classes)
            total = crossEntropyForward(logits: UnsafeBufferPointer(start: output, count: rows * classes), rows: rows,
                                        classes: classes, label: { Int(labels[$0]) }, logProbabilities: logProbabilities)
            crossEntropyBackward(logProbabilities: UnsafeBufferPointer(logProbabilities), rows: rows, classes: classes,
                                 label: { Int(labels[$0]) }, scale: scale, logitsGradient: gradient)
        case .probabilities(let epsilon):
            for row in 0..<rows {
                let p = output + row * classes, label = Int(labels[row])
                let terms = sparseCategoricalCrossentropyRow(p, classes: classes, label: label, epsilon: epsilon)
                total += terms.loss
                sparseCategoricalCrossentropyRowGradient(p, classes: classes, label: label, sum: terms.sum,
                                                         clipped: terms.clipped, scale: scale, into: gradient + row * classes)
            }
        }
        return Float(total / Double(max(rows, 1)))
    }

    /// Rows whose first maximal output is at the label (`Tensor.argmax`'s rule).
    private func correctPredictions(rows: Int) -> Int {
        let classes = widths[stages.count], output = values[stages.count]
        var correct = 0
        for row in 0..<rows {
            let line = output + row * classes
            var best = 0
            for j in 1..<max(classes, 1) where line[j] > line[best] { best = j }
            if best == Int(labels[row]) { correct += 1 }
        }
        return correct
    }

    // MARK: Backward

    private func backward(stage index: Int, rows: Int) {
        let x = values[index], dy = gradients[index + 1]
        // Stage 0's input is the data: no gradient flows into it.
        let dx: UnsafeMutablePointer<Float>? = index > 0 ? gradients[index] : nil
        let inWidth = widths[index]
        let slots = parameterSlots[index]
        switch stages[index] {
        case let .linear(weight, _, inFeatures, outFeatures):
            if let slot = slots.weight {
                // dW = dyᵀ · x (outFeatures, inFeatures).
                withGradientBuffer(slot) { dW in
                    linearWeightGradient(outputGradient: dy, input: x, rows: rows, inFeatures: inFeatures,
                                         outFeatures: outFeatures, weightGradient: dW)
                }
            }
            if let slot = slots.bias {
                // db = Σ_rows dy, accumulated in Double as `summed(toShape:)` does.
                withGradientBuffer(slot) { db in
                    for j in 0..<outFeatures {
                        var total = 0.0
                        for row in 0..<rows { total += Double(dy[row * outFeatures + j]) }
                        db[j] = Float(total)
                    }
                }
            }
            if let dx {
                // dx = dy · W (rows, inFeatures).
                weight.value.withUnsafeBufferPointer { w in
                    linearInputGradient(outputGradient: dy, weight: w.baseAddress!, rows: rows, inFeatures: inFeatures,
                                        outFeatures: outFeatures, inputGradient: dx)
                }
            }
        case let .batchNorm(layer, scratch):
            let channels = scratch.channels
            if let gamma = layer.weight?.value {
                gamma.withUnsafeBufferPointer { batchNormBackward(x: x, dy: dy, dx: dx, rows: rows, scratch: scratch, gamma: $0) }
            } else {
                batchNormBackward(x: x, dy: dy, dx: dx, rows: rows, scratch: scratch, gamma: nil)
            }
            if let slot = slots.weight {
                withGradientBuffer(slot) { $0.update(from: scratch.gammaGradient.baseAddress!, count: channels) }
            }
            if let slot = slots.bias {
                withGradientBuffer(slot) { $0.update(from: scratch.betaGradient.baseAddress!, count: channels) }
            }
        case .relu:
            // The output is positive exactly where the input is.
            guard let dx else { return }
            for i in 0..<rows * inWidth { dx[i] = x[i] > 0 ? dy[i] : 0 }
        case .softmax:
            guard let dx else { return }
            let count = rows * inWidth
            softmaxBackward(output: UnsafeBufferPointer(start: values[index + 1], count: count),
                            outputGradient: UnsafeBufferPointer(start: dy, count: count), rows: rows, classes: inWidth,
                            logarithm: false, inputGradient: UnsafeMutableBufferPointer(start: dx, count: count))
        }
    }

    private func batchNormBackward(x: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>,
                                   dx: UnsafeMutablePointer<Float>?, rows: Int, scratch: BatchNormScratch,
                                   gamma: UnsafeBufferPointer<Float>?) {
        let count = rows * scratch.channels
        scratch.mean.withUnsafeBufferPointer { mean in
            scratch.inverseStandardDeviation.withUnsafeBufferPointer { invstd in
                NormKitCore.batchNormBackward(
                    input: UnsafeBufferPointer(start: x, count: count), outputGradient: UnsafeBufferPointer(start: dy, count: count),
                    outer: rows, channels: scratch.channels, inner: 1, mean: mean, inverseStandardDeviation: invstd,
                    gamma: gamma, statisticsFromBatch: true, meanResidual: UnsafeBufferPointer(scratch.meanResidual),
                    inputGradient: dx.map { UnsafeMutableBufferPointer(start: $0, count: count) },
                    gammaGradient: scratch.gammaGradient, betaGradient: scratch.betaGradient)
            }
        }
    }

    /// Writable values of a reused parameter-gradient tensor. It is unique unless
    /// someone kept the gradient handed out last step; then copy-on-write gives
    /// this step a new buffer and leaves theirs alone.
    private func withGradientBuffer(_ slot: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        parameterGradients[slot].gradient.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }
}

extension Optional where Wrapped == Tensor {
    /// The tensor's values, or `count` ones when there is none (γ of a non-affine layer).
    fileprivate func withUnsafeBufferPointer(orOnes count: Int, _ body: (UnsafeBufferPointer<Float>) -> Void) {
        withUnsafeBufferPointer(or: 1, count: count, body)
    }

    /// The tensor's values, or `count` zeros when there is none (β of a non-affine layer).
    fileprivate func withUnsafeBufferPointer(orZeros count: Int, _ body: (UnsafeBufferPointer<Float>) -> Void) {
        withUnsafeBufferPointer(or: 0, count: count, body)
    }

    private func withUnsafeBufferPointer(or value: Float, count: Int, _ body: (UnsafeBufferPointer<Float>) -> Void) {
        if let self { return self.withUnsafeBufferPointer(body) }
        let fill = [Float](repeating: value, count: count)   // only for layers without γ/β
        fill.withUnsafeBufferPointer(body)
    }
}

extension Sequential: LayerChain {
    var chainedLayers: [FusedTrainingStep.Layer]? {
        var chain: [FusedTrainingStep.Layer] = []
        for layer in layers {
            // Exact classes only: a subclass may override forward.
            switch layer {
            case let linear as Linear: chain.append(.linear(linear))
            case let norm as BatchNorm where type(of: norm) == BatchNorm.self || type(of: norm) == BatchNorm1d.self:
                chain.append(.batchNorm(norm))
            case is ReLU: chain.append(.relu)
            case is Flatten: chain.append(.flatten)
            case is Softmax: chain.append(.softmax)
            default: return nil
            }
        }
        return chain
    }
}

extension SeedMLP: LayerChain {
    var chainedLayers: [FusedTrainingStep.Layer]? {
        [.linear(fc1)] + (bn.map { [.batchNorm($0)] } ?? []) + [.relu, .linear(fc2), .softmax]
    }
}
