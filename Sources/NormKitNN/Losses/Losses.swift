import NormKitCore
import Synchronization

/// A loss: predictions (batch, classes) and integer class labels → a scalar.
public protocol Loss {
    func callAsFunction(_ predictions: Tensor, _ labels: [Int]) -> Tensor
}

/// Cross-entropy from logits (PyTorch's `nn.CrossEntropyLoss`): the mean over
/// the batch of −log softmax(logits)[label].
///
/// One autodiff node: the loss is computed through log-softmax (never
/// log(softmax), which underflows), and the pullback is (softmax − onehot)/N.
/// It applies softmax itself: feeding it probabilities (the output of a
/// `Softmax`) applies softmax twice, which trains but flattens the gradients;
/// NormKit notices and warns once.
public struct CrossEntropyLoss: Loss {
    public init() {}

    public func callAsFunction(_ logits: Tensor, _ labels: [Int]) -> Tensor {
        NormKitNN.crossEntropy(logits: logits, labels: labels)
    }
}

/// Keras' `SparseCategoricalCrossentropy` (from probabilities): each row is
/// divided by its sum, clipped to [1e-7, 1 − 1e-7] (Keras' epsilon), and the
/// loss is the batch mean of −log p[label].
public struct SparseCategoricalCrossentropy: Loss {
    public let fromLogits: Bool
    public init(fromLogits: Bool = false) { self.fromLogits = fromLogits }

    public func callAsFunction(_ predictions: Tensor, _ labels: [Int]) -> Tensor {
        fromLogits ? NormKitNN.crossEntropy(logits: predictions, labels: labels)
            : NormKitNN.sparseCategoricalCrossentropy(probabilities: predictions, labels: labels)
    }
}

extension Loss where Self == SparseCategoricalCrossentropy {
    /// Keras' `"sparse_categorical_crossentropy"`: probabilities and integer labels.
    public static var sparseCategoricalCrossentropy: SparseCategoricalCrossentropy { SparseCategoricalCrossentropy() }
}

extension Loss where Self == CrossEntropyLoss {
    /// Cross-entropy from logits and integer labels.
    public static var crossEntropy: CrossEntropyLoss { CrossEntropyLoss() }
}

private func checkLabels(_ predictions: Tensor, _ labels: [Int], _ name: String) -> (rows: Int, classes: Int) {
    precondition(predictions.rank == 2, "\(name) expects predictions (batch, classes), got shape \(predictions.shape)")
    let (rows, classes) = (predictions.shape[0], predictions.shape[1])
    precondition(labels.count == rows, "\(name): \(labels.count) labels for predictions of shape \(predictions.shape)")
    for label in labels {
        precondition(label >= 0 && label < classes, "\(name): label \(label) is outside 0..<\(classes) (predictions \(predictions.shape))")
    }
    return (rows, classes)
}

/// Mean cross-entropy of `logits` (batch, classes) against integer `labels`.
public func crossEntropy(logits: Tensor, labels: [Int]) -> Tensor {
    let (rows, classes) = checkLabels(logits, labels, "crossEntropy")
    DoubleSoftmaxDetector.check(logits)
    var logProbabilities = [Float](repeating: 0, count: rows * classes)
    let total = logits.withUnsafeBufferPointer { x in
        logProbabilities.withUnsafeMutableBufferPointer { y in
            crossEntropyForward(logits: x, rows: rows, classes: classes, label: { labels[$0] }, logProbabilities: y)
        }
    }
    var loss = Tensor(scalar: Float(total / Double(max(rows, 1))))
    loss.record("crossEntropy", inputs: [logits]) { g in
        let scale = g.scalar / Float(rows)
        return [Tensor(shape: [rows, classes]) { dx in
            logProbabilities.withUnsafeBufferPointer { logProbabilities in
                crossEntropyBackward(logProbabilities: logProbabilities, rows: rows, classes: classes,
                                     label: { labels[$0] }, scale: scale, logitsGradient: dx.baseAddress!)
            }
        }]
    }
    return loss
}

/// Keras' sparse categorical cross-entropy on `probabilities` (batch, classes).
///
/// Each row is normalized by its sum s and clipped to [ε, 1 − ε], ε = 1e-7, as
/// Keras does, so a zero probability costs −log ε ≈ 16.1 instead of ∞. With
/// q = p[label]/s, the gradient is (1/s − δ·1/p[label])/N where q is inside the
/// clip range and 0 where the clip is active.
public func sparseCategoricalCrossentropy(probabilities: Tensor, labels: [Int], epsilon: Float = 1e-7) -> Tensor {
    let (rows, classes) = checkLabels(probabilities, labels, "sparseCategoricalCrossentropy")
    let p = probabilities.scalars
    var rowSums = [Float](repeating: 0, count: rows)
    var total = 0.0
    var clipped = [Bool](repeating: false, count: rows)
    p.withUnsafeBufferPointer { p in
        for row in 0..<rows {
            let terms = sparseCategoricalCrossentropyRow(p.baseAddress! + row * classes, classes: classes,
                                                         label: labels[row], epsilon: epsilon)
            rowSums[row] = terms.sum
            clipped[row] = terms.clipped
            total += terms.loss
        }
    }
    var loss = Tensor(scalar: Float(total / Double(max(rows, 1))))
    loss.record("sparseCategoricalCrossentropy", inputs: [probabilities]) { g in
        let scale = g.scalar / Float(rows)
        return [Tensor(shape: [rows, classes]) { dx in
            p.withUnsafeBufferPointer { p in
                for row in 0..<rows {
                    sparseCategoricalCrossentropyRowGradient(
                        p.baseAddress! + row * classes, classes: classes, label: labels[row], sum: rowSums[row],
                        clipped: clipped[row], scale: scale, into: dx.baseAddress! + row * classes)
                }
            }
        }]
    }
    return loss
}

// MARK: Kernels shared with FusedTrainingStep (which runs them on its own buffers)

/// Fills `logProbabilities` (rows·classes) with log softmax of `logits` and
/// returns −Σ_rows log p[label(row)], accumulated in Double.
func crossEntropyForward(logits: UnsafeBufferPointer<Float>, rows: Int, classes: Int, label: (Int) -> Int,
                         logProbabilities: UnsafeMutableBufferPointer<Float>) -> Double {
    softmaxForward(logits, rows: rows, classes: classes, logarithm: true, output: logProbabilities)
    var total = 0.0
    for row in 0..<rows { total -= Double(logProbabilities[row * classes + label(row)]) }
    return total
}

/// (softmax − onehot)·`scale` (rows, classes): the gradient of `scale` times the
/// summed cross-entropy with respect to the logits, from `crossEntropyForward`'s log-probabilities.
func crossEntropyBackward(logProbabilities: UnsafeBufferPointer<Float>, rows: Int, classes: Int, label: (Int) -> Int,
                          scale: Float, logitsGradient: UnsafeMutablePointer<Float>) {
    for i in 0..<rows * classes { logitsGradient[i] = _exp(logProbabilities[i]) * scale }
    for row in 0..<rows { logitsGradient[row * classes + label(row)] -= scale }
}

/// One row `p` of `classes` probabilities: its sum s, −log of q = p[label]/s
/// clipped to [ε, 1 − ε], and whether the clip is active.
func sparseCategoricalCrossentropyRow(_ p: UnsafePointer<Float>, classes: Int, label: Int,
                                      epsilon: Float) -> (sum: Float, loss: Double, clipped: Bool) {
    var sum: Float = 0
    for j in 0..<classes { sum += p[j] }
    let q = p[label] / sum
    let bounded = min(max(q, epsilon), 1 - epsilon)
    return (sum, -Double(_log(bounded)), bounded != q)
}

/// That row's loss gradient times `scale` into `dp`: (1/s − δ_label/p[label])·scale,
/// or 0 where the clip is active (the loss is constant there).
func sparseCategoricalCrossentropyRowGradient(_ p: UnsafePointer<Float>, classes: Int, label: Int, sum: Float,
                                              clipped: Bool, scale: Float, into dp: UnsafeMutablePointer<Float>) {
    if clipped {
        for j in 0..<classes { dp[j] = 0 }
        return
    }
    let inverseSum = 1 / sum
    for j in 0..<classes { dp[j] = scale * inverseSum }
    dp[label] -= scale / p[label]
}

/// Notices when a loss that applies softmax receives probabilities.
enum DoubleSoftmaxDetector {
    private static let warned = Atomic<Bool>(false)
    static let message = "warning: crossEntropy(logits:labels:) / CrossEntropyLoss received the output of a softmax. "
        + "It applies log-softmax itself, so softmax is applied twice: probabilities are squashed toward uniform "
        + "and gradients shrink. Fix: remove the final Softmax and pass logits, or keep the Softmax and use "
        + "SparseCategoricalCrossentropy() (which takes probabilities)."

    /// Whether `logits` looks like softmax output: produced by a softmax node,
    /// or (without a graph) every row non-negative and summing to 1.
    static func looksLikeProbabilities(_ logits: Tensor) -> Bool {
        if let node = logits.gradientNode { return node.operation == "softmax" }
        let classes = logits.shape.last ?? 1
        guard classes > 1, logits.scalarCount > 0 else { return false }
        return logits.withUnsafeBufferPointer { x in
            stride(from: 0, to: x.count, by: classes).allSatisfy { start in
                var sum: Float = 0
                for j in 0..<classes {
                    let v = x[start + j]
                    if v < 0 || v > 1 { return false }
                    sum += v
                }
                return abs(sum - 1) < 1e-4
            }
        }
    }

    static func check(_ logits: Tensor) {
        guard looksLikeProbabilities(logits) else { return }
        if !warned.exchange(true, ordering: .relaxed) { printToStandardError(message) }
    }

    /// For tests: whether the warning has been printed in this process.
    static var hasWarned: Bool { warned.load(ordering: .relaxed) }
}
