import NormKitCore
import NormKitNN

extension Module {
    /// `fit` that saves a checkpoint into `checkpoints` after every epoch and,
    /// when `resume`, first continues from the directory's latest checkpoint.
    ///
    /// A resumed run restores the model, the optimizer, `GlobalRandom` and the
    /// shuffling generator, then trains epochs `checkpoint.epoch + 1 … epochs`:
    /// it ends with the same weights, bit for bit, as a run that was never
    /// interrupted (same seed, same thread count). With `resume` and no
    /// checkpoint in the directory, training starts from epoch 1; `generator` is
    /// used only then. Call `compile` first.
    /// - Returns: the history of the epochs this call trained, and the epoch it resumed after (0 for a fresh start).
    @discardableResult
    public func fit(_ data: some BatchSource, epochs: Int, batchSize: Int = 32, shuffle: Bool = true,
                    dropsLastPartialBatch: Bool = false, validationData: (any BatchSource)? = nil,
                    generator: SeededGenerator, progress: ProgressReporter.Style = .automatic,
                    checkpoints: CheckpointDirectory, resume: Bool) throws -> (history: History, resumedAfterEpoch: Int) {
        guard let optimizer = compiledOptimizer else {
            preconditionFailure("fit: call compile(optimizer:loss:metrics:) first")
        }
        if optimizer.parameters.isEmpty {
            _ = build(inputShape: [batchSize] + data.featureShape)
            optimizer.parameters = trainableParameters()
        }
        // Before any training: a directory that cannot be made would otherwise stop the run after an epoch.
        try checkpoints.create()
        var generator = generator
        var initialEpoch = 0
        if resume, let checkpoint = try checkpoints.latest() {
            try checkpoint.restore(into: self, optimizer: optimizer)
            generator = checkpoint.shuffling
            initialEpoch = checkpoint.epoch
        }
        let history = try fit(data, epochs: epochs, batchSize: batchSize, shuffle: shuffle,
                              dropsLastPartialBatch: dropsLastPartialBatch, validationData: validationData,
                              generator: generator, progress: progress, initialEpoch: initialEpoch) { epoch, generator in
            try checkpoints.save(Checkpoint(capturing: self, optimizer: optimizer, epoch: epoch, shuffling: generator))
        }
        return (history, initialEpoch)
    }
}
