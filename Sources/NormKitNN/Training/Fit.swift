import NormKitCore

/// A metric reported during `fit` and `evaluate`.
public enum Metric: String, Sendable {
    /// Fraction of examples whose arg-max prediction equals the label.
    case accuracy
}

/// What `compile` stores on a model.
struct CompiledConfiguration {
    let optimizer: any Optimizer
    let loss: any Loss
    let metrics: [Metric]
}

/// Per-epoch results of `fit`, like Keras' `History.history`.
public struct History: Sendable {
    /// The number of each epoch recorded (Keras' `history.epoch`, 1-based): 1, 2, … for a
    /// fresh run, `initialEpoch + 1`, … for a resumed one.
    public var epochs: [Int] = []
    public var loss: [Double] = []
    public var accuracy: [Double] = []
    public var validationLoss: [Double] = []
    public var validationAccuracy: [Double] = []
    /// Wall-clock seconds of each epoch's training loop.
    public var epochSeconds: [Double] = []
}

/// Loss and metrics of one `trainOnBatch` update, what Keras' `train_on_batch` returns.
public struct BatchTrainingResult: Sendable {
    /// The batch's mean loss, from the forward pass before the update (as `fit` reports it).
    public var loss: Double
    /// The fraction of the batch whose arg-max prediction, before the update, equals
    /// the label; nil unless `compile` was given `.accuracy`.
    public var accuracy: Double?
}

/// What `trainOnBatch` keeps from one call to the next.
final class BatchTrainingState {
    /// Every module of the model but the model itself (which would make a
    /// reference cycle), so that a call can switch them to `.training` and back
    /// without walking the tree (reflection, which allocates).
    let submodules: [Module]
    /// The mode each of `submodules` was in when the current call began; kept
    /// here so that recording it writes in place instead of allocating.
    var foundModes: [Mode]
    /// The fused step of the last call, if the model took it.
    var fused: FusedTrainingStep?
    /// The example shape (without the batch axis) `fused` was built for.
    var featureShape: [Int] = []

    init(submodules: [Module]) {
        self.submodules = submodules
        foundModes = submodules.map(\.mode)
    }

    /// Records each submodule's mode and switches it to `.training`.
    func enterTraining() {
        for index in submodules.indices {
            foundModes[index] = submodules[index].mode
            submodules[index].mode = .training
        }
    }

    /// Puts each submodule back in the mode `enterTraining()` found.
    func restoreModes() {
        for index in submodules.indices { submodules[index].mode = foundModes[index] }
    }
}

/// Loss and metrics from `evaluate`.
public struct Evaluation: Sendable {
    public var loss: Double
    public var accuracy: Double
}

extension Module {
    /// Keras' `compile`: chooses the optimizer, the loss and the metrics `fit` uses.
    public func compile(optimizer: any Optimizer, loss: some Loss, metrics: [Metric] = []) {
        compiled = CompiledConfiguration(optimizer: optimizer, loss: loss, metrics: metrics)
        batchTraining = nil   // its fused step was built for the previous loss
    }

    /// The optimizer `compile` configured (Keras' `model.optimizer`), if any; checkpoints save its state.
    public var compiledOptimizer: (any Optimizer)? { compiled?.optimizer }

    /// Keras' `fit`: trains in `.training` mode for `epochs` passes over `data`,
    /// then puts every module back in the mode it found it in (Keras' rule: a
    /// Keras-style `Sequential(inputShape:)`, which starts in `.inference`, infers
    /// again when called after `fit`; a model in `.training`, PyTorch's start, stays there).
    ///
    /// Each epoch visits the examples in a fresh random order (when `shuffle`)
    /// drawn from `generator`, in batches of `batchSize`; the last batch may be
    /// smaller unless `dropsLastPartialBatch`. After each epoch the model is
    /// evaluated on `validationData` in `.inference` mode. Progress is a bar on a
    /// terminal, one line per epoch otherwise.
    ///
    /// To resume (Keras' `initial_epoch`), pass the epoch already finished as
    /// `initialEpoch` and the shuffling generator as it was after that epoch:
    /// training then runs epochs `initialEpoch + 1 … epochs` exactly as an
    /// uninterrupted run would. `epochFinished` receives each finished epoch's
    /// number and the shuffling generator's state (what a checkpoint saves).
    ///
    /// - Throws: `FitError.noTrainingBatches` before any work when `data` give no
    ///   batch; what `validationData`'s evaluation or `epochFinished` throws.
    @discardableResult
    public func fit(_ data: some BatchSource, epochs: Int, batchSize: Int = 32, shuffle: Bool = true,
                    dropsLastPartialBatch: Bool = false, validationData: (any BatchSource)? = nil,
                    generator: SeededGenerator? = nil, progress: ProgressReporter.Style = .automatic,
                    initialEpoch: Int = 0,
                    epochFinished: ((_ epoch: Int, _ generator: SeededGenerator) throws -> Void)? = nil) throws -> History {
        guard let compiled else { preconditionFailure("fit: call compile(optimizer:loss:metrics:) first") }
        precondition(epochs >= 0 && batchSize >= 1, "fit: epochs \(epochs) and batchSize \(batchSize) must be positive")
        precondition(initialEpoch >= 0, "fit: initialEpoch must be ≥ 0, got \(initialEpoch)")
        let usableCount = dropsLastPartialBatch ? data.count / batchSize * batchSize : data.count
        let steps = (usableCount + batchSize - 1) / batchSize
        if steps == 0 && epochs > initialEpoch {
            throw FitError.noTrainingBatches(exampleCount: data.count, batchSize: batchSize,
                                             dropsLastPartialBatch: dropsLastPartialBatch)
        }
        if compiled.optimizer.parameters.isEmpty {
            _ = build(inputShape: [batchSize] + data.featureShape)
            compiled.optimizer.parameters = trainableParameters()
        }
        var generator = generator ?? SeededGenerator(seed: GlobalRandom.nextSeed())
        var reporter = ProgressReporter(style: progress)
        var buffers = BatchBuffers(featureShape: data.featureShape, capacity: batchSize)
        var order = Array(0..<data.count)
        var history = History()
        let wantsAccuracy = compiled.metrics.contains(.accuracy)
        let foundModes = namedModules().map { ($0.1, $0.1.mode) }
        defer { for (module, found) in foundModes { module.mode = found } }
        setMode(.training)
        let fused = allowsFusedTrainingStep
            ? FusedTrainingStep(model: self, loss: compiled.loss, featureShape: data.featureShape, capacity: batchSize) : nil

        for epoch in stride(from: initialEpoch + 1, through: epochs, by: 1) {
            // A fresh permutation of 0..<count each epoch (PyTorch's randperm, and DataLoader here), so an
            // epoch's order depends only on the generator's state: what lets a resumed run repeat it.
            if shuffle {
                order = Array(0..<data.count)
                order.shuffle(using: &generator)
            }
            setMode(.training)
            let started = monotonicSeconds()
            var lossSum = 0.0, correct = 0, seen = 0
            // Whether the fused step ran the epoch's last step: only then are its statistics the
            // last batch's (a layer changed mid-run sends the steps after it to the general path,
            // which publishes its own).
            var lastStepWasFused = false
            for step in 0..<steps {
                let indices = order[(step * batchSize)..<min((step + 1) * batchSize, usableCount)]
                let fusedResult = try fused?.step(data, indices: indices, optimizer: compiled.optimizer)
                lastStepWasFused = fusedResult != nil
                let result = try fusedResult
                    ?? generalStep(data, indices: indices, buffers: &buffers, compiled: compiled)
                lossSum += Double(result.loss) * Double(indices.count)
                seen += indices.count
                correct += result.correct
                reporter.stepFinished(epoch: epoch, epochs: epochs, step: step + 1, steps: steps, started: started,
                                      loss: lossSum / Double(seen), accuracy: wantsAccuracy ? Double(correct) / Double(seen) : nil)
            }
            let seconds = monotonicSeconds() - started
            history.epochs.append(epoch)
            if lastStepWasFused { fused?.publishStatistics() }
            history.epochSeconds.append(seconds)
            history.loss.append(lossSum / Double(max(seen, 1)))
            var line = "Epoch \(epoch)/\(epochs) - \(fixed(seconds, 2))s - loss: \(fixed(history.loss.last!, 4))"
            if wantsAccuracy {
                history.accuracy.append(Double(correct) / Double(max(seen, 1)))
                line += " - accuracy: \(fixed(history.accuracy.last!, 4))"
            }
            if let validationData {
                let result = try evaluate(validationData, batchSize: max(batchSize, 256))
                history.validationLoss.append(result.loss)
                history.validationAccuracy.append(result.accuracy)
                line += " - val_loss: \(fixed(result.loss, 4)) - val_accuracy: \(fixed(result.accuracy, 4))"
            }
            reporter.epochFinished(line)
            try epochFinished?(epoch, generator)
        }
        return history
    }

    /// One step through the autodiff graph on the examples of `data` at `indices`.
    private func generalStep(_ data: some BatchSource, indices: ArraySlice<Int>, buffers: inout BatchBuffers,
                             compiled: CompiledConfiguration) throws -> (loss: Float, correct: Int) {
        let (batch, labels) = buffers.load(data, indices: indices)
        return try generalStep(batch, labels: labels, compiled: compiled, operation: "fit")
    }

    /// One step through the autodiff graph: forward, loss, zeroGrad, backward,
    /// optimizer step. The graph (which holds the weights' storage) is released
    /// before the optimizer updates the weights in place, so they are not copied.
    /// A label outside the output's classes throws once the forward pass has run
    /// (as in PyTorch, whose loss raises after the model's forward), before the loss.
    private func generalStep(_ batch: Tensor, labels: [Int], compiled: CompiledConfiguration,
                             operation: String) throws -> (loss: Float, correct: Int) {
        let result: (loss: Float, correct: Int) = try {
            let output = try forward(batch)
            try _checkLabels(labels, against: output, operation: operation)
            let loss = compiled.loss(output, labels)
            compiled.optimizer.zeroGrad()
            loss.backward()
            return (loss.scalar, zip(output.argmax(axis: -1), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) })
        }()
        compiled.optimizer.step()
        return result
    }

    /// Keras' `train_on_batch`: one update of the weights on the batch `x`, `y`, in
    /// `.training` mode, as one step of `fit` over the same examples.
    ///
    /// Returns the loss and the compiled metrics of the batch, computed on the
    /// forward pass before the update. Like `fit`, it builds a lazily sized model
    /// on the first batch, trains in `.training` mode and then restores the mode
    /// each module was in (so a Keras-style model infers again when called), and
    /// runs the allocation-free fused step when the model and loss allow it (otherwise the
    /// autodiff step): the weights, optimizer state and running statistics then
    /// end bit for bit where `fit` over the same batches in the same order leaves
    /// them. The running statistics are folded in during the call and the batch's
    /// statistics published (`BatchNorm.lastBatchStatistics`), so `evaluate` and
    /// `predict` afterwards see both.
    ///
    /// The fused step and its buffers are kept from one call to the next, so a
    /// steady stream of batches allocates nothing per call. They are rebuilt when
    /// a batch has more examples than the kept step was built for (a smaller one
    /// fits in its buffers), when the example shape changes, when `compile` is called again,
    /// or when the layers changed in a way the step checks (a parameter made
    /// (non-)trainable, a batch norm frozen); a model it does not take tries again
    /// on each call, so a change that makes it eligible takes effect at once.
    ///
    /// - Parameters:
    ///   - x: the batch, (batch, featureShape…) with batch ≥ 1 (≥ 2 through batch norm).
    ///   - y: `batch` class indices, each in 0..<classes (else `FitError.labelOutOfRange`,
    ///     thrown before anything changes on the fused step, after the forward pass otherwise).
    @discardableResult
    public func trainOnBatch(x: Tensor, y: [Int]) throws -> BatchTrainingResult {
        guard let compiled else { preconditionFailure("trainOnBatch: call compile(optimizer:loss:metrics:) first") }
        precondition(x.rank >= 1 && x.shape[0] == y.count && !y.isEmpty,
                     "trainOnBatch: x \(x.shape) and y (\(y.count) labels) must hold the same number (≥ 1) of examples")
        if compiled.optimizer.parameters.isEmpty {
            _ = build(inputShape: x.shape)
            compiled.optimizer.parameters = trainableParameters()
        }
        let state: BatchTrainingState
        if let kept = batchTraining {
            state = kept
        } else {
            state = BatchTrainingState(submodules: namedModules().dropFirst().map(\.1))
            batchTraining = state
        }
        // Through the kept list, not setMode/withMode, which walk the tree by reflection on every call.
        let foundMode = mode
        mode = .training
        state.enterTraining()
        defer {
            mode = foundMode
            state.restoreModes()
        }

        var result: (loss: Float, correct: Int)?
        if allowsFusedTrainingStep {
            func rebuild(capacity: Int) {
                state.fused = nil   // its buffers go before the new ones are allocated (unless a caller holds it)
                state.featureShape = Array(x.shape.dropFirst())
                state.fused = FusedTrainingStep(model: self, loss: compiled.loss, featureShape: state.featureShape,
                                                capacity: capacity)
            }
            // The capacity to rebuild with, if the kept step cannot take this batch; decided
            // before rebuilding so that no binding keeps the old step's buffers alive meanwhile.
            var rebuildCapacity: Int? = y.count
            if let kept = state.fused, kept.capacity >= y.count, x.shape.dropFirst().elementsEqual(state.featureShape) {
                result = try kept.step(features: x, labels: y, optimizer: compiled.optimizer)
                rebuildCapacity = result == nil ? kept.capacity : nil   // nil result: the layers changed since it was built
            }
            if let capacity = rebuildCapacity {
                rebuild(capacity: capacity)
                result = try state.fused?.step(features: x, labels: y, optimizer: compiled.optimizer)
            }
            if result != nil { state.fused!.publishStatistics() }
        }
        let (loss, correct) = try result ?? generalStep(x.detached(), labels: y, compiled: compiled, operation: "trainOnBatch")
        return BatchTrainingResult(loss: Double(loss),
                                   accuracy: compiled.metrics.contains(.accuracy) ? Double(correct) / Double(y.count) : nil)
    }

    /// Keras' `fit(x, y, …)` on in-memory tensors.
    @discardableResult
    public func fit(x: Tensor, y: [Int], epochs: Int, batchSize: Int = 32, shuffle: Bool = true,
                    validationData: (x: Tensor, y: [Int])? = nil, generator: SeededGenerator? = nil,
                    progress: ProgressReporter.Style = .automatic) throws -> History {
        try fit(TensorDataset(features: x, labels: y), epochs: epochs, batchSize: batchSize, shuffle: shuffle,
                validationData: validationData.map { TensorDataset(features: $0.x, labels: $0.y) },
                generator: generator, progress: progress)
    }

    /// Loss and accuracy on `data` in `.inference` mode, without recording a
    /// graph; the previous mode is restored afterwards. Uses the compiled loss,
    /// or cross-entropy from the outputs if the model was not compiled.
    /// Throws `FitError.noExamplesToEvaluate` for empty data (0 / 0 is no score).
    public func evaluate(_ data: some BatchSource, batchSize: Int = 1000) throws -> Evaluation {
        guard data.count > 0 else { throw FitError.noExamplesToEvaluate }
        let loss: any Loss = compiled?.loss ?? SparseCategoricalCrossentropy(fromLogits: true)
        var lossSum = 0.0, correct = 0
        try forEachOutput(data, batchSize: batchSize) { output, labels in
            try _checkLabels(labels, against: output, operation: "evaluate")
            lossSum += Double(loss(output, labels).scalar) * Double(labels.count)
            correct += zip(output.argmax(axis: -1), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        }
        let count = Double(data.count)
        return Evaluation(loss: lossSum / count, accuracy: Double(correct) / count)
    }

    /// The model's outputs for every example of `data`, in `.inference` mode.
    public func predict(_ data: some BatchSource, batchSize: Int = 1000) throws -> Tensor {
        var rows: [Float] = []
        var outputShape: [Int] = []
        try forEachOutput(data, batchSize: batchSize) { output, _ in
            outputShape = Array(output.shape.dropFirst())
            rows += output.scalars
        }
        return Tensor(rows, shape: [data.count] + outputShape)
    }

    /// The model's outputs for `x`, in `.inference` mode.
    public func predict(_ x: Tensor) throws -> Tensor {
        try withMode(.inference) { try Autodiff.withoutRecording { try forward(x) } }
    }

    private func forEachOutput(_ data: some BatchSource, batchSize: Int, _ body: (Tensor, [Int]) throws -> Void) throws {
        var buffers = BatchBuffers(featureShape: data.featureShape, capacity: batchSize)
        let order = Array(0..<data.count)
        try withMode(.inference) {
            try Autodiff.withoutRecording {
                var start = 0
                while start < data.count {
                    let indices = order[start..<min(start + batchSize, data.count)]
                    let (batch, labels) = buffers.load(data, indices: indices)
                    try body(try forward(batch), labels)
                    start += batchSize
                }
            }
        }
    }
}

/// Data `fit` or `evaluate` cannot run on. Keras raises here too; a PyTorch loop
/// over an empty loader runs no step and reports nothing, which hides the mistake.
public enum FitError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The training data give no batch: no examples at all, or fewer than one
    /// full batch when the last partial batch is dropped.
    case noTrainingBatches(exampleCount: Int, batchSize: Int, dropsLastPartialBatch: Bool)
    /// `evaluate` got no examples: its loss and accuracy would be 0 / 0.
    case noExamplesToEvaluate
    /// A label is not one of the model's classes 0..<classes (its output width): data
    /// from elsewhere than the model expects. PyTorch's and Keras' losses raise here.
    case labelOutOfRange(operation: String, label: Int, classes: Int)

    public var description: String {
        switch self {
        case .noTrainingBatches(let exampleCount, let batchSize, _):
            if exampleCount == 0 { return "fit: the training data have no examples" }
            // Examples without a batch: only dropping the partial batch leaves them (dropsLastPartialBatch is true).
            return "fit: \(exampleCount) examples make no full batch of \(batchSize), and dropsLastPartialBatch drops the partial one"
        case .noExamplesToEvaluate:
            return "evaluate: the data have no examples, so loss and accuracy are undefined"
        case .labelOutOfRange(let operation, let label, let classes):
            return "\(operation): label \(label) is outside the model's classes 0..<\(classes)"
        }
    }
}

/// Throws `FitError.labelOutOfRange` for the first of `labels` outside 0..<classes.
func _checkLabels(_ labels: [Int], classes: Int, operation: String) throws(FitError) {
    if let label = labels.first(where: { $0 < 0 || $0 >= classes }) {
        throw .labelOutOfRange(operation: operation, label: label, classes: classes)
    }
}

/// The same against the classes of `output` (batch, classes); outputs of another
/// rank are left to the loss to refuse.
func _checkLabels(_ labels: [Int], against output: Tensor, operation: String) throws(FitError) {
    guard output.rank == 2 else { return }
    try _checkLabels(labels, classes: output.shape[1], operation: operation)
}
