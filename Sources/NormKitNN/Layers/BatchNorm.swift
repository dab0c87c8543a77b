import NormKitCore

/// How batch normalization folds a batch's statistics into its running estimates.
///
/// Libraries disagree on what "momentum" means, so NormKit names the weight:
/// PyTorch's and MLX's `momentum=0.1` is `.newBatchWeight(0.1)`; Keras' and
/// Flax's `momentum=0.99` (and ONNX's 0.9) is `.oldValueWeight(0.99)`;
/// PyTorch's `momentum=None` is `.cumulativeAverage`.
public enum RunningAverage: Sendable, Equatable, CustomStringConvertible {
    /// running ← (1 − w)·running + w·batch.
    case newBatchWeight(Float)
    /// running ← m·running + (1 − m)·batch.
    case oldValueWeight(Float)
    /// running ← running + (batch − running)/t after t batches: the plain mean
    /// of every batch seen, counted in `numBatchesTracked`.
    case cumulativeAverage

    /// The weight of the new batch after `batchesTracked` batches (counting this one).
    func newBatchFactor(batchesTracked: Int) -> Double {
        switch self {
        case .newBatchWeight(let w): Double(w)
        case .oldValueWeight(let m): 1 - Double(m)
        case .cumulativeAverage: 1 / Double(batchesTracked)
        }
    }

    public var description: String {
        switch self {
        case .newBatchWeight(let w): "newBatchWeight(\(w))"
        case .oldValueWeight(let m): "oldValueWeight(\(m))"
        case .cumulativeAverage: "cumulativeAverage"
        }
    }
}

/// Errors a batch-norm layer throws for input it cannot normalize.
public enum BatchNormError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Training-mode statistics need at least two values per channel.
    case singleValuePerChannel(layer: String, shape: [Int])
    /// The same in inference mode, for a layer that normalizes with batch statistics there too
    /// (`tracksRunningStatistics: false`, or `statistics = .batch`), where inference mode is no remedy.
    case singleValuePerChannelWithBatchStatisticsInInference(layer: String, shape: [Int])

    public var description: String {
        switch self {
        case let .singleValuePerChannelWithBatchStatisticsInInference(layer, shape):
            "\(layer): expected more than 1 value per channel, got input shape \(shape) in inference mode. The layer "
                + "normalizes with batch statistics in inference too (it does not track running statistics, or its "
                + "statistics control is .batch), and statistics of one value are undefined (variance 0, output β). "
                + "Give it more than one value per channel, track running statistics (tracksRunningStatistics: true, "
                + "statistics = .followMode), or use a normalization that does not depend on the batch (GroupNorm, LayerNorm)."
        case let .singleValuePerChannel(layer, shape):
            "\(layer): expected more than 1 value per channel when training, got input shape \(shape). "
                + "Batch statistics of one value are undefined (variance 0, output β). Drop the last partial batch "
                + "(fit(…, dropsLastPartialBatch: true)), evaluate in inference mode, or use a normalization "
                + "that does not depend on the batch (GroupNorm, LayerNorm)."
        }
    }
}

/// Batch normalization (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167).
///
/// Per feature c over every value that shares it (m = N, or N·L, or N·H·W, or
/// N·D·H·W): y = γ·(x − μ)/√(σ² + ε) + β. In `.training` mode μ and σ² are the
/// batch's mean and biased variance, and the running estimates move toward
/// them (with the unbiased variance σ²·m/(m − 1) by default, as in the paper's
/// Algorithm 2 and PyTorch); in `.inference` mode the running estimates are
/// used. The forward is one autodiff node with a fused analytic pullback that
/// keeps only μ and 1/σ per feature.
///
/// Statistics are computed in two passes with Double accumulators and the
/// variance is clamped at 0, so inputs with |mean| ≫ std and constant
/// features stay exact. A batch whose statistics are not finite is never
/// folded into the running estimates; it is counted in `nonFiniteBatchCount`.
///
/// Spellings: `BatchNorm1d` (N, C) or (N, C, L), `BatchNorm2d` (N, C, H, W),
/// `BatchNorm3d` (N, C, D, H, W) check the rank as PyTorch's do; `BatchNorm`
/// itself takes any rank ≥ 2 with the features on `featureAxis` (1, or −1 for
/// channels-last); `BatchNormalization()` is Keras' spelling.
///
/// Options beyond the peers: `renormalization` (Batch Renormalization, see
/// `BatchRenormalization`) and `ghostBatchSize` (statistics per virtual
/// sub-batch). Both act only when the layer normalizes with batch statistics.
///
/// **Settings are fixed at construction.** `featureAxis`, `epsilon`,
/// `runningAverage`, `isAffine`, `tracksRunningStatistics`,
/// `storesUnbiasedVariance`, `renormalization` and `ghostBatchSize` are `let`s:
/// changing one later would leave γ, β or the running estimates describing
/// something else (running variances stored biased read as unbiased, a running
/// average weighted with another momentum, buffers that do not exist). The
/// compiler rejects an assignment. `featureCount` is set once, by the
/// initializer or the first input, and every later input must match it.
/// What may change at any time are the three controls below (`statistics`,
/// `runningStatisticsUpdates`, `areAffineParametersTrainable`) and `mode`.
///
/// Parameter and buffer names follow PyTorch: `weight` (γ), `bias` (β),
/// `running_mean`, `running_var`, `num_batches_tracked`.
public class BatchNorm: Module {
    /// The axis that holds the features: 1 for channels-first (PyTorch), -1 for channels-last (Keras).
    public let featureAxis: Int
    /// Features on `featureAxis`; fixed by the initializer or by the first input.
    public private(set) var featureCount: Int?
    /// Added to the variance before the square root; > 0.
    public let epsilon: Float
    public let runningAverage: RunningAverage
    /// Whether γ (`weight`; Keras' `scale`) exists and trains.
    public let hasScale: Bool
    /// Whether β (`bias`; Keras' `center`) exists and trains.
    public let hasShift: Bool
    /// Whether γ and β both exist (PyTorch's `affine`). Keras' `BatchNormalization`
    /// may keep one without the other (`scale: false` before a ReLU or a linear layer).
    public var isAffine: Bool { hasScale && hasShift }
    public let tracksRunningStatistics: Bool
    /// Whether the running variance stores the unbiased estimate (PyTorch) or the biased one (Keras, ONNX).
    public let storesUnbiasedVariance: Bool
    /// Batch Renormalization's schedule, or nil for plain batch norm. Needs tracked running statistics.
    public let renormalization: BatchRenormalization?
    /// Samples per ghost batch (the last may be smaller), or nil for statistics over the whole batch.
    ///
    /// Each consecutive run of `ghostBatchSize` samples along axis 0 is
    /// normalized with its own statistics (Hoffer et al. 2017,
    /// https://arxiv.org/abs/1705.08741). The running estimates move once per
    /// forward, as in tf.keras 2's `virtual_batch_size`: toward the mean of the
    /// whole batch (the sample-weighted mean of the ghost means) and the pooled
    /// within-ghost-batch variance Σmₖσₖ²/Σmₖ, or Σmₖσₖ²/Σ(mₖ − 1) when the
    /// running variance is unbiased — the variance that actually normalized,
    /// so inference matches training's scale. With equal ghost batches these
    /// are tf.keras' averages of the per-ghost statistics. A ghost batch with
    /// one value per feature throws `BatchNormError.singleValuePerChannel`.
    public let ghostBatchSize: Int?
    /// Ranks of input this layer accepts, and how to say so (nil: any rank ≥ 2).
    let acceptedRanks: (ranks: Set<Int>, description: String)?

    /// γ, `weight` in PyTorch, `gamma` in Keras. Initially 1.
    public private(set) var weight: Parameter?
    /// β, `bias` in PyTorch, `beta` in Keras. Initially 0.
    public private(set) var bias: Parameter?
    /// The running estimates, when tracked and built.
    var running: RunningStatistics?
    /// Running mean per feature; initially 0.
    public internal(set) var runningMean: Tensor? {
        get { running?.mean }
        set { running!.mean = newValue! }
    }
    /// Running variance per feature; initially 1.
    public internal(set) var runningVariance: Tensor? {
        get { running?.variance }
        set { running!.variance = newValue! }
    }
    /// Batches folded into the running estimates so far.
    public var numBatchesTracked: Int { running?.batchesTracked ?? 0 }
    /// Training batches whose statistics were not finite and were left out of the running estimates.
    public var nonFiniteBatchCount: Int { running?.nonFiniteBatches ?? 0 }
    /// The statistics of the last forward that used batch statistics (for inspection and tests).
    /// With ghost batches: the whole batch's mean and the pooled biased within-ghost-batch
    /// variance (what the running estimates follow); `lastGhostBatchStatistics` has each one's.
    public internal(set) var lastBatchStatistics: BatchNormStatistics?
    /// The statistics of each ghost batch in the last forward that used batch statistics
    /// (one entry without ghost batches).
    public internal(set) var lastGhostBatchStatistics: [BatchNormStatistics] = []
    /// Batch Renormalization's r and d per ghost batch in the last forward that used them.
    public internal(set) var lastRenormalizationCorrections: [RenormalizationCorrection] = []

    /// - Parameters:
    ///   - featureCount: features on `featureAxis`; nil to take it from the first input.
    ///   - featureAxis: 1 for channels-first (N, C, …), −1 for channels-last (N, …, C).
    ///   - epsilon: added to the variance before the square root; must be > 0.
    ///   - runningAverage: how running estimates follow the batches (PyTorch's momentum 0.1 by default).
    ///   - affine: whether γ and β exist and train.
    ///   - tracksRunningStatistics: when false, batch statistics are used in both modes.
    ///   - unbiasedRunningVariance: store σ²·m/(m − 1) (true, PyTorch) or σ² (false, Keras).
    ///   - renormalization: Batch Renormalization's schedule (needs tracked running statistics).
    ///   - ghostBatchSize: samples per ghost batch (features must not be on axis 0).
    public convenience init(featureCount: Int? = nil, featureAxis: Int = 1, epsilon: Float = 1e-5,
                            runningAverage: RunningAverage = .newBatchWeight(0.1), affine: Bool = true,
                            tracksRunningStatistics: Bool = true, unbiasedRunningVariance: Bool = true,
                            renormalization: BatchRenormalization? = nil, ghostBatchSize: Int? = nil) {
        self.init(featureCount: featureCount, featureAxis: featureAxis, epsilon: epsilon, runningAverage: runningAverage,
                  affine: (scale: affine, shift: affine), tracksRunningStatistics: tracksRunningStatistics,
                  unbiasedRunningVariance: unbiasedRunningVariance, renormalization: renormalization,
                  ghostBatchSize: ghostBatchSize, acceptedRanks: nil)
    }

    init(featureCount: Int?, featureAxis: Int, epsilon: Float, runningAverage: RunningAverage,
         affine: (scale: Bool, shift: Bool),
         tracksRunningStatistics: Bool, unbiasedRunningVariance: Bool, renormalization: BatchRenormalization?,
         ghostBatchSize: Int?, acceptedRanks: (ranks: Set<Int>, description: String)?) {
        self.featureAxis = featureAxis
        self.epsilon = epsilon
        self.runningAverage = runningAverage
        self.hasScale = affine.scale
        self.hasShift = affine.shift
        self.tracksRunningStatistics = tracksRunningStatistics
        self.storesUnbiasedVariance = unbiasedRunningVariance
        self.renormalization = renormalization
        self.ghostBatchSize = ghostBatchSize
        self.acceptedRanks = acceptedRanks
        super.init()
        // Checked once every setting is stored, so that the message can name the layer.
        let name = "\(type(of: self))(\(featureCount.map(String.init) ?? "featureCount: nil"))"
        precondition(epsilon > 0, "\(name): epsilon must be > 0, got \(epsilon) (PyTorch's default is 1e-5, Keras' 1e-3)")
        runningAverage.validate(layer: name)
        precondition(renormalization == nil || tracksRunningStatistics,
                     "\(name): Batch Renormalization corrects toward the running statistics, so it needs tracksRunningStatistics: true")
        if let ghostBatchSize {
            precondition(ghostBatchSize > 0, "\(name): ghostBatchSize must be positive, got \(ghostBatchSize)")
            precondition(featureAxis != 0, "\(name): ghost batches split axis 0, so the features cannot be on axis 0")
        }
        if let featureCount { materialize(featureCount: featureCount) }
    }

    private func materialize(featureCount: Int) {
        precondition(featureCount > 0, "\(description): featureCount must be positive, got \(featureCount)")
        self.featureCount = featureCount
        if hasScale { weight = Parameter(.ones([featureCount]), isTrainable: affineTrainableOverride ?? true) }
        if hasShift { bias = Parameter(.zeros([featureCount]), isTrainable: affineTrainableOverride ?? true) }
        if tracksRunningStatistics {
            running = RunningStatistics(featureCount: featureCount)
        }
    }

    private func checkShape(_ shape: [Int]) {
        if let acceptedRanks {
            precondition(acceptedRanks.ranks.contains(shape.count),
                         "\(description) expects input of \(acceptedRanks.description), got rank \(shape.count) (shape \(shape))")
        }
        precondition(shape.count >= 2, "\(description) expects input (batch, features, …) of rank ≥ 2, got shape \(shape)")
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        precondition(axis >= 0 && axis < shape.count, "\(description): feature axis \(featureAxis) is outside shape \(shape)")
        precondition(ghostBatchSize == nil || axis != 0,
                     "\(description): ghost batches split axis 0, but feature axis \(featureAxis) is axis 0 of shape \(shape)")
        if let featureCount {
            precondition(shape[axis] == featureCount,
                         "\(description) expects \(featureCount) features on axis \(featureAxis), "
                            + "got \(shape[axis]) (input shape \(shape))")
        }
    }

    /// Builds an unbuilt `BatchNormalization()` from the length of its `weight`,
    /// `bias`, `running_mean` or `running_var`.
    public override func buildForLoading(entryShapes shapes: [String: [Int]]) -> (() -> Void)? {
        guard featureCount == nil,
              let shape = ["weight", "bias", "running_mean", "running_var"].lazy.compactMap({ shapes[$0] }).first,
              shape.count == 1, shape[0] > 0
        else { return nil }
        materialize(featureCount: shape[0])
        return { [self] in
            featureCount = nil
            weight = nil
            bias = nil
            running = nil
        }
    }

    public override func build(inputShape: [Int]) -> [Int] {
        checkShape(inputShape)
        if featureCount == nil {
            let axis = featureAxis < 0 ? featureAxis + inputShape.count : featureAxis
            materialize(featureCount: inputShape[axis])
        }
        return inputShape
    }

    // MARK: Controls
    //
    // Three controls independent of each other and of `mode`, each defaulting
    // to following the mode; `statistics` documents what every combination does.

    /// Which statistics normalize the input.
    public enum StatisticsChoice: Sendable, Equatable {
        /// Batch statistics in training, running estimates in inference (the default).
        case followMode
        /// Batch statistics in both modes.
        case batch
        /// Running estimates in both modes (needs tracked running statistics).
        case running
    }

    /// Whether training-mode forwards fold batch statistics into the running estimates.
    public enum RunningStatisticsUpdates: Sendable, Equatable {
        /// Update in training whenever batch statistics normalize (the default).
        case followMode
        /// Never update (and do not advance `numBatchesTracked`).
        case never
    }

    /// Which statistics normalize the input.
    ///
    /// The three controls — `statistics`, `runningStatisticsUpdates` and
    /// `areAffineParametersTrainable` — are independent of each other and of
    /// `mode`. With the default `runningStatisticsUpdates = .followMode`:
    ///
    /// | statistics | mode | normalizes with | running estimates update | gradient to x |
    /// |---|---|---|---|---|
    /// | `.followMode` | training | batch | yes | through μ_B, σ_B |
    /// | `.followMode` | inference | running | no | dy·γ·invstd |
    /// | `.batch` | training | batch | yes | through μ_B, σ_B |
    /// | `.batch` | inference | batch | no (updates happen only in training) | through μ_B, σ_B |
    /// | `.running` | training | running | no (no batch statistics) | dy·γ·invstd |
    /// | `.running` | inference | running | no | dy·γ·invstd |
    ///
    /// - `runningStatisticsUpdates = .never` makes every "yes" a "no" (and stops
    ///   `numBatchesTracked`, which is Batch Renormalization's step).
    /// - `areAffineParametersTrainable = false` keeps γ and β out of the gradient
    ///   and the optimizer in every row, changing nothing else.
    /// - Without tracked running statistics every row normalizes with the batch,
    ///   and `.running` is refused.
    /// - Renormalization and ghost batches act on the rows that normalize with the batch.
    /// - `freeze()` is `.running` + `.never` + γ/β fixed: the same fixed affine map
    ///   in both modes, so a frozen layer stays frozen when the model is switched
    ///   back to training — unlike Keras, where `trainable = False` silently means
    ///   inference, and PyTorch, where `requires_grad = False` still updates the
    ///   running statistics.
    public var statistics: StatisticsChoice = .followMode {
        didSet {
            precondition(statistics != .running || tracksRunningStatistics,
                         "\(description): running statistics were requested but the layer does not track them")
        }
    }

    /// Whether running estimates are updated (see `statistics` for every combination).
    public var runningStatisticsUpdates: RunningStatisticsUpdates = .followMode

    /// Whether γ and β train (get gradients and optimizer steps); independent of the other controls.
    public var areAffineParametersTrainable: Bool {
        get { (weight ?? bias)?.isTrainable ?? false }
        set {
            weight?.isTrainable = newValue
            bias?.isTrainable = newValue
            affineTrainableOverride = newValue
        }
    }
    private var affineTrainableOverride: Bool?

    /// Fine-tuning mode: normalize with the running statistics, never update them,
    /// and keep γ and β fixed, whatever `mode` the model is switched to.
    public func freeze() {
        precondition(tracksRunningStatistics, "\(description): freeze() needs running statistics to normalize with")
        statistics = .running
        runningStatisticsUpdates = .never
        areAffineParametersTrainable = false
    }

    /// Undoes `freeze()`: every control follows the mode again and γ, β train.
    public func unfreeze() {
        statistics = .followMode
        runningStatisticsUpdates = .followMode
        areAffineParametersTrainable = true
    }

    /// Whether this forward normalizes with the batch's statistics.
    var usesBatchStatistics: Bool {
        if !tracksRunningStatistics { return true }
        switch statistics {
        case .batch: return true
        case .running: return false
        case .followMode: return mode == .training
        }
    }

    /// Whether this forward updates the running estimates.
    var updatesRunningStatistics: Bool {
        tracksRunningStatistics && usesBatchStatistics && mode == .training && runningStatisticsUpdates == .followMode
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        _ = build(inputShape: input.shape)
        guard usesBatchStatistics else {
            let given = (mean: runningMean!.scalars, variance: runningVariance!.scalars)
            return batchNorm(input, featureAxis: featureAxis, gamma: weight?.tensor, beta: bias?.tensor,
                             epsilon: epsilon, using: given).output
        }
        guard input.scalarCount > 0 else { return emptyBatchOutput(input) }
        try checkValuesPerFeature(input.shape)
        let reference = renormalization.map { renormalization in
            let limits = renormalization.limits(atStep: numBatchesTracked)
            return BatchRenormalizationReference(runningMean: runningMean!.scalars,
                                                 runningVariance: runningVariance!.scalars,
                                                 rMax: limits.rMax, dMax: limits.dMax)
        }
        let result = batchNorm(input, featureAxis: featureAxis, gamma: weight?.tensor, beta: bias?.tensor,
                               epsilon: epsilon, ghostBatchSize: ghostBatchSize, renormalizingToward: reference)
        let statistics = pooled(result.statistics)
        lastBatchStatistics = statistics
        lastGhostBatchStatistics = result.statistics
        lastRenormalizationCorrections = result.corrections
        if updatesRunningStatistics { updateRunningStatistics(with: statistics, groupCount: result.statistics.count) }
        return result.output
    }

    /// An empty batch ((0, C), or a zero-sized spatial axis) has no statistics: as in
    /// PyTorch its output is empty, and the running estimates stay as they are. Unlike
    /// PyTorch, `numBatchesTracked` does not count it, so a cumulative average and the
    /// Batch Renormalization schedule only count batches that carried values.
    /// Still one node, so γ and β get their (zero) gradients.
    private func emptyBatchOutput(_ input: Tensor) -> Tensor {
        let channels = featureCount!
        let neutral = (mean: [Float](repeating: 0, count: channels), variance: [Float](repeating: 1, count: channels))
        return batchNorm(input, featureAxis: featureAxis, gamma: weight?.tensor, beta: bias?.tensor,
                         epsilon: epsilon, using: neutral).output
    }

    /// Throws unless every (ghost) batch has more than one value per feature.
    private func checkValuesPerFeature(_ shape: [Int]) throws {
        let layout = FeatureLayout(shape: shape, featureAxis: featureAxis)
        guard let ghostBatchSize, shape[0] > ghostBatchSize else {
            guard layout.outer * layout.inner > 1 else { throw singleValueError(layer: description, shape: shape) }
            return
        }
        let samples = shape[0], ghostCount = (samples + ghostBatchSize - 1) / ghostBatchSize
        let valuesPerSample = layout.outer / samples * layout.inner
        // Only the last ghost batch can be smaller than the others.
        let lastSize = samples - (ghostCount - 1) * ghostBatchSize
        guard lastSize * valuesPerSample > 1 else {
            throw singleValueError(
                layer: "\(description), ghost batch \(ghostCount) of \(ghostCount) (samples \(samples - lastSize)..<\(samples))",
                shape: [lastSize] + shape.dropFirst())
        }
    }

    /// One value per feature: in training the usual error; in inference (only a layer that
    /// normalizes with the batch there too gets here) the one that does not suggest inference mode.
    private func singleValueError(layer: String, shape: [Int]) -> BatchNormError {
        mode == .inference
            ? .singleValuePerChannelWithBatchStatisticsInInference(layer: layer, shape: shape)
            : .singleValuePerChannel(layer: layer, shape: shape)
    }

    /// The whole batch's statistics from its ghost batches': the sample-weighted
    /// mean of the means (the batch mean) and of the biased variances (the pooled
    /// within-ghost-batch variance). One group is returned as it is.
    private func pooled(_ groups: [BatchNormStatistics]) -> BatchNormStatistics {
        guard groups.count > 1 else { return groups[0] }
        let channels = groups[0].mean.count
        let total = Double(groups.reduce(0) { $0 + $1.count })
        var mean = [Float](repeating: 0, count: channels), variance = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            mean[c] = Float(groups.reduce(0.0) { $0 + Double($1.count) * Double($1.mean[c]) } / total)
            variance[c] = Float(groups.reduce(0.0) { $0 + Double($1.count) * Double($1.variance[c]) } / total)
        }
        return BatchNormStatistics(mean: mean, variance: variance,
                                   inverseStandardDeviation: variance.map { Float(1 / (Double($0) + Double(epsilon)).squareRoot()) },
                                   count: Int(total))
    }

    /// Folds a batch's statistics into the running estimates. `groupCount` ghost
    /// batches of M = `statistics.count` values in all make the unbiased pooled
    /// variance Σmₖσₖ²/(M − groupCount) = σ²·M/(M − groupCount); one group is m/(m − 1).
    func updateRunningStatistics(with statistics: BatchNormStatistics, groupCount: Int) {
        let m = Double(statistics.count), k = Double(groupCount)
        let correction = storesUnbiasedVariance && m > k ? m / (m - k) : 1
        running!.fold(average: runningAverage, layer: description,
                      batchMean: { Double(statistics.mean[$0]) },
                      batchVariance: { Double(statistics.variance[$0]) * correction })
    }

    // MARK: Buffers

    /// PyTorch's buffer names; none when running statistics are not tracked (as in PyTorch).
    public override func ownBuffers() -> [(String, StateValue)] { running?.buffers ?? [] }

    public override func setOwnBuffer(_ name: String, to value: StateValue) {
        running!.setBuffer(name, to: value, layer: description)
    }

    public override var description: String {
        let name = String(describing: type(of: self))
        return "\(name)(\(featureCount.map(String.init) ?? "?"), epsilon: \(epsilon), \(runningAverage)"
            + (featureAxis == 1 ? "" : ", featureAxis: \(featureAxis)")
            + (ghostBatchSize.map { ", ghostBatchSize: \($0)" } ?? "")
            + (renormalization.map { ", \($0)" } ?? "") + ")"
    }
}

/// Batch norm over (N, C) or (N, C, L), PyTorch's `nn.BatchNorm1d` (ε 1e-5, momentum 0.1).
public final class BatchNorm1d: BatchNorm {
    /// See `BatchNorm.init(featureCount:featureAxis:epsilon:runningAverage:affine:tracksRunningStatistics:unbiasedRunningVariance:renormalization:ghostBatchSize:)`.
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = true, tracksRunningStatistics: Bool = true, unbiasedRunningVariance: Bool = true,
                renormalization: BatchRenormalization? = nil, ghostBatchSize: Int? = nil) {
        super.init(featureCount: featureCount, featureAxis: 1, epsilon: epsilon, runningAverage: runningAverage,
                   affine: (scale: affine, shift: affine), tracksRunningStatistics: tracksRunningStatistics,
                   unbiasedRunningVariance: unbiasedRunningVariance, renormalization: renormalization,
                   ghostBatchSize: ghostBatchSize, acceptedRanks: ([2, 3], "rank 2 (N, C) or 3 (N, C, L)"))
    }
}

/// Batch norm over (N, C, H, W), PyTorch's `nn.BatchNorm2d` (ε 1e-5, momentum 0.1).
/// For channels-last (N, H, W, C) use `BatchNorm(featureCount:featureAxis: -1)`.
public final class BatchNorm2d: BatchNorm {
    /// See `BatchNorm.init(featureCount:featureAxis:epsilon:runningAverage:affine:tracksRunningStatistics:unbiasedRunningVariance:renormalization:ghostBatchSize:)`.
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = true, tracksRunningStatistics: Bool = true, unbiasedRunningVariance: Bool = true,
                renormalization: BatchRenormalization? = nil, ghostBatchSize: Int? = nil) {
        super.init(featureCount: featureCount, featureAxis: 1, epsilon: epsilon, runningAverage: runningAverage,
                   affine: (scale: affine, shift: affine), tracksRunningStatistics: tracksRunningStatistics,
                   unbiasedRunningVariance: unbiasedRunningVariance, renormalization: renormalization,
                   ghostBatchSize: ghostBatchSize, acceptedRanks: ([4], "rank 4 (N, C, H, W)"))
    }
}

/// Batch norm over (N, C, D, H, W), PyTorch's `nn.BatchNorm3d` (ε 1e-5, momentum 0.1).
/// For channels-last (N, D, H, W, C) use `BatchNorm(featureCount:featureAxis: -1)`.
public final class BatchNorm3d: BatchNorm {
    /// See `BatchNorm.init(featureCount:featureAxis:epsilon:runningAverage:affine:tracksRunningStatistics:unbiasedRunningVariance:renormalization:ghostBatchSize:)`.
    public init(_ featureCount: Int, epsilon: Float = 1e-5, runningAverage: RunningAverage = .newBatchWeight(0.1),
                affine: Bool = true, tracksRunningStatistics: Bool = true, unbiasedRunningVariance: Bool = true,
                renormalization: BatchRenormalization? = nil, ghostBatchSize: Int? = nil) {
        super.init(featureCount: featureCount, featureAxis: 1, epsilon: epsilon, runningAverage: runningAverage,
                   affine: (scale: affine, shift: affine), tracksRunningStatistics: tracksRunningStatistics,
                   unbiasedRunningVariance: unbiasedRunningVariance, renormalization: renormalization,
                   ghostBatchSize: ghostBatchSize, acceptedRanks: ([5], "rank 5 (N, C, D, H, W)"))
    }
}

/// Keras' `layers.BatchNormalization`: features on the last axis, ε 1e-3,
/// momentum 0.99 weighting the old value, biased moving variance; the feature
/// count comes from the first input. `virtualBatchSize` is tf.keras 2's ghost
/// batch size (Keras 3 dropped it) and `renormalization` stands for Keras'
/// `renorm=True` with `renorm_clipping` (see `BatchRenormalization` for the difference).
/// `center` keeps β (`bias`, Keras' `beta`) and `scale` keeps γ (`weight`, Keras' `gamma`),
/// each on its own as in Keras: `scale: false` is Keras' advice when the next layer is
/// linear or a ReLU, which γ would only rescale.
public func BatchNormalization(axis: Int = -1, momentum: Float = 0.99, epsilon: Float = 1e-3,
                               center: Bool = true, scale: Bool = true, virtualBatchSize: Int? = nil,
                               renormalization: BatchRenormalization? = nil) -> BatchNorm {
    BatchNorm(featureCount: nil, featureAxis: axis, epsilon: epsilon, runningAverage: .oldValueWeight(momentum),
              affine: (scale: scale, shift: center), tracksRunningStatistics: true, unbiasedRunningVariance: false,
              renormalization: renormalization, ghostBatchSize: virtualBatchSize, acceptedRanks: nil)
}
