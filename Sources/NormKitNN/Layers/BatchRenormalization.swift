import NormKitCore

/// Batch Renormalization (Ioffe 2017, https://arxiv.org/abs/1702.03275): the
/// option of `BatchNorm` that corrects the batch statistics toward the running
/// estimates, so that training normalizes (nearly) as inference will.
///
/// In training, with σ_B = √(σ²_B + ε) and σ_run = √(running variance + ε):
///
///     r = clip(σ_B/σ_run, 1/rMax, rMax),   d = clip((μ_B − μ_run)/σ_run, −dMax, dMax),
///     y = γ·(x̂·r + d) + β,                 x̂ = (x − μ_B)/σ_B,
///
/// with r and d constants of the step (no gradient flows through them). rMax = 1
/// and dMax = 0 are plain batch norm; without clipping y is exactly the
/// inference output γ·(x − μ_run)/σ_run + β. Inference uses the running
/// estimates as usual, and they are updated as usual (the layer's
/// `runningAverage`, unbiased or biased variance) after r and d are computed.
///
/// The limits follow a schedule of the step, because early running estimates
/// are poor: the paper trains with rMax = 1, dMax = 0 for 5000 steps, then
/// relaxes them linearly to rMax = 3 (reached at step 40 000) and dMax = 5
/// (at step 25 000) — `paperSchedule`. The step is the layer's
/// `numBatchesTracked` before the batch (batches folded into the running
/// estimates so far), so a model saved with its `num_batches_tracked` resumes
/// the schedule where it stopped; batches that do not update the running
/// estimates (`runningStatisticsUpdates = .never`, non-finite batches) do not
/// advance it.
///
/// NormKit corrects toward the same running mean and variance that inference
/// uses, so that without clipping training normalizes exactly as inference
/// will. Keras' `renorm=True` instead keeps a second pair of moving averages
/// (`renorm_mean`, `renorm_stddev`, with `renorm_momentum`) for r and d, and
/// takes fixed limits (`renorm_clipping`) that the user must schedule by hand;
/// PyTorch has no Batch Renormalization.
public struct BatchRenormalization: Sendable, CustomStringConvertible {
    /// The clipping limits at one step.
    public struct Limits: Sendable, Equatable {
        /// r ∈ [1/rMax, rMax]; ≥ 1.
        public var rMax: Float
        /// d ∈ [−dMax, dMax]; ≥ 0.
        public var dMax: Float

        public init(rMax: Float, dMax: Float) {
            precondition(rMax >= 1, "BatchRenormalization: rMax must be ≥ 1, got \(rMax)")
            precondition(dMax >= 0, "BatchRenormalization: dMax must be ≥ 0, got \(dMax)")
            self.rMax = rMax
            self.dMax = dMax
        }
    }

    private let schedule: @Sendable (_ step: Int) -> Limits
    public let description: String

    /// A schedule of your own: `limits(step)` for the step-th batch (0-based,
    /// the layer's `numBatchesTracked` before it).
    public init(description: String = "BatchRenormalization(custom schedule)",
                limits: @escaping @Sendable (_ step: Int) -> Limits) {
        self.schedule = limits
        self.description = description
    }

    /// The limits for the step-th batch (0-based).
    public func limits(atStep step: Int) -> Limits { schedule(step) }

    /// The same limits at every step.
    public static func constant(rMax: Float, dMax: Float) -> BatchRenormalization {
        let limits = Limits(rMax: rMax, dMax: dMax)
        return BatchRenormalization(description: "BatchRenormalization(rMax: \(rMax), dMax: \(dMax))") { _ in limits }
    }

    /// rMax = 1 and dMax = 0 up to step `plainSteps`, then each grows linearly
    /// to its final value, reached at step `rMaxReachedAt` and `dMaxReachedAt`
    /// respectively, and stays there.
    public static func linearWarmUp(rMax: Float = 3, dMax: Float = 5, plainSteps: Int = 5000,
                                    rMaxReachedAt: Int = 40_000, dMaxReachedAt: Int = 25_000) -> BatchRenormalization {
        precondition(plainSteps >= 0 && rMaxReachedAt > plainSteps && dMaxReachedAt > plainSteps,
                     "BatchRenormalization.linearWarmUp: the limits must be reached after the \(plainSteps) plain steps "
                        + "(got rMax at \(rMaxReachedAt), dMax at \(dMaxReachedAt))")
        let final = Limits(rMax: rMax, dMax: dMax)   // validates
        let description = "BatchRenormalization(rMax 1 → \(rMax) and dMax 0 → \(dMax) after \(plainSteps) steps, "
            + "reached at \(rMaxReachedAt) and \(dMaxReachedAt))"
        return BatchRenormalization(description: description) { step in
            func progress(_ reachedAt: Int) -> Float {
                Float(min(max(Double(step - plainSteps) / Double(reachedAt - plainSteps), 0), 1))
            }
            return Limits(rMax: 1 + (final.rMax - 1) * progress(rMaxReachedAt), dMax: final.dMax * progress(dMaxReachedAt))
        }
    }

    /// The paper's schedule: `linearWarmUp()` (rMax 1 → 3, dMax 0 → 5 after 5000 plain steps).
    public static let paperSchedule = linearWarmUp()
}
