import NormKitCore
import Synchronization

/// The per-feature estimates a normalization layer keeps for inference, under
/// PyTorch's buffer names `running_mean`, `running_var` and `num_batches_tracked`.
///
/// BatchNorm and InstanceNorm both keep one, so that they follow batches the
/// same way: each update is computed in Double and stored in Float, and a batch
/// whose estimates are not finite (NaN or ∞ in the input) is never folded in —
/// one such batch would poison every later inference — but counted in
/// `nonFiniteBatches` and reported once on standard error.
struct RunningStatistics {
    /// Running mean per feature, (features). Initially 0.
    var mean: Tensor
    /// Running variance per feature, (features), as the layer stores it (biased or unbiased). Initially 1.
    var variance: Tensor
    /// Batches folded in so far.
    var batchesTracked = 0
    /// Batches left out because their estimates were not finite.
    var nonFiniteBatches = 0

    init(featureCount: Int) {
        mean = .zeros([featureCount])
        variance = .ones([featureCount])
    }

    /// Moves the estimates toward one batch's: `batchMean(c)` and `batchVariance(c)`
    /// give feature c's, the variance already in the stored convention. When
    /// any of them is not finite nothing changes, the batch is counted, and
    /// `layer` is named in a one-time warning.
    mutating func fold(average: RunningAverage, layer: @autoclosure () -> String,
                       batchMean: (Int) -> Double, batchVariance: (Int) -> Double) {
        let features = mean.scalarCount
        guard (0..<features).allSatisfy({ batchMean($0).isFinite && batchVariance($0).isFinite }) else {
            nonFiniteBatches += 1
            if !Self.warned.exchange(true, ordering: .relaxed) {
                printToStandardError("warning: \(layer()) saw a batch with non-finite statistics (NaN or ∞ in the input); "
                                     + "it was left out of the running mean and variance (nonFiniteBatchCount counts such batches).")
            }
            return
        }
        batchesTracked += 1
        let factor = average.newBatchFactor(batchesTracked: batchesTracked)
        mean.withUnsafeMutableBufferPointer { mean in
            variance.withUnsafeMutableBufferPointer { variance in
                for c in 0..<features {
                    mean[c] = Float((1 - factor) * Double(mean[c]) + factor * batchMean(c))
                    variance[c] = Float((1 - factor) * Double(variance[c]) + factor * batchVariance(c))
                }
            }
        }
    }

    private static let warned = Atomic<Bool>(false)

    // MARK: State dict

    var buffers: [(String, StateValue)] {
        [("running_mean", .float(mean)), ("running_var", .float(variance)), ("num_batches_tracked", .integer(batchesTracked))]
    }

    /// Why `value` cannot be buffer `name`, or nil: a negative batch count would make the
    /// cumulative average divide by 0 (and rewind Batch Renormalization's schedule), and a
    /// negative running variance makes inference take the square root of a negative number.
    /// Either would silently turn every later output into NaN, so loading refuses them.
    static func expectationUnmet(byBuffer name: String, _ value: StateValue) -> String? {
        switch name {
        case "num_batches_tracked":
            (value.integerScalar ?? 0) < 0 ? "a count ≥ 0" : nil
        case "running_var":
            value.floatTensor.scalars.contains { $0 < 0 } ? "variances ≥ 0" : nil
        default:
            nil
        }
    }

    /// Sets one of `buffers` by name; the state dict has checked names and shapes already.
    mutating func setBuffer(_ name: String, to value: StateValue, layer: @autoclosure () -> String) {
        switch name {
        case "running_mean": mean = value.floatTensor
        case "running_var": variance = value.floatTensor
        case "num_batches_tracked": batchesTracked = value.integerScalar!
        default: preconditionFailure("\(layer()) has no buffer '\(name)'")
        }
    }
}

/// A layer whose buffers are a `RunningStatistics`' (BatchNorm, InstanceNorm), so that
/// `loadStateDict` can check their values with `RunningStatistics.expectationUnmet`.
/// A protocol rather than an overridable `Module` method: adding one would change
/// `Module`'s vtable, which other modules' stale incremental builds do not notice.
protocol _KeepsRunningStatistics: Module {}

extension BatchNorm: _KeepsRunningStatistics {}
extension InstanceNorm: _KeepsRunningStatistics {}

extension RunningAverage {
    /// Stops with a message naming `layer` when the weight is outside [0, 1].
    func validate(layer: @autoclosure () -> String) {
        switch self {
        case .newBatchWeight(let w): precondition(w >= 0 && w <= 1, "\(layer()): newBatchWeight must be in [0, 1], got \(w)")
        case .oldValueWeight(let m): precondition(m >= 0 && m <= 1, "\(layer()): oldValueWeight must be in [0, 1], got \(m)")
        case .cumulativeAverage: break
        }
    }
}
