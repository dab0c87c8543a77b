// Cross-entropy from logits, Keras' sparse categorical cross-entropy from
// probabilities, and the detector for softmax applied twice.

import Foundation
import NormKitCore
@testable import NormKitNN
import Testing

/// Mean over rows of log Σⱼ e^{xⱼ} − x_label, with the log-sum-exp taken around the row maximum.
private func referenceCrossEntropy(_ logits: [Double], classes: Int, labels: [Int]) -> Double {
    var total = 0.0
    for (row, label) in labels.enumerated() {
        let values = logits[row * classes..<(row + 1) * classes]
        let top = values.max()!
        let logSumExp = top + Foundation.log(values.map { Foundation.exp($0 - top) }.reduce(0, +))
        total += logSumExp - values[row * classes + label]
    }
    return total / Double(labels.count)
}

/// Keras: divide each row by its sum, clip to [ε, 1 − ε], mean of −log p[label].
private func referenceSparseCrossEntropy(_ probabilities: [Double], classes: Int, labels: [Int],
                                         epsilon: Double = 1e-7) -> Double {
    var total = 0.0
    for (row, label) in labels.enumerated() {
        let values = probabilities[row * classes..<(row + 1) * classes]
        let q = values[row * classes + label] / values.reduce(0, +)
        total -= Foundation.log(min(max(q, epsilon), 1 - epsilon))
    }
    return total / Double(labels.count)
}

@Suite("Cross-entropy from logits")
struct CrossEntropyTests {
    let classes = 5
    let labels = [0, 3, 4, 1, 3, 2]
    var logits: [Double] { randomDoubles(labels.count * classes, in: -4...4, seed: 1) }

    @Test("the loss is the batch mean of log-sum-exp minus the label's logit")
    func lossMatchesReference() {
        let loss = CrossEntropyLoss()(tensor(logits, shape: [labels.count, classes]), labels)
        #expect(loss.shape == [])
        expectClose(loss.scalar, referenceCrossEntropy(logits, classes: classes, labels: labels), relative: 1e-6)
    }

    @Test("SparseCategoricalCrossentropy(fromLogits: true) is the same loss")
    func fromLogitsIsCrossEntropy() {
        let x = tensor(logits, shape: [labels.count, classes])
        expectClose(SparseCategoricalCrossentropy(fromLogits: true)(x, labels),
                    [Double(CrossEntropyLoss()(x, labels).scalar)], relative: 0, "loss")
    }

    @Test("logits of ±1000 give a finite, exact loss and finite gradients")
    func extremeLogitsStayFinite() throws {
        let values: [Double] = [1000, -1000, 0, -1000, 1000, 0]
        let input = leaf(values, shape: [2, 3])

        let loss = crossEntropy(logits: input.tensor, labels: [1, 1])
        loss.backward()

        // Row 0 costs 1000 − (−1000) = 2000, row 1 costs log(1 + 2e⁻¹⁰⁰⁰) ≈ 0.
        #expect(loss.scalar.isFinite)
        expectClose(loss.scalar, referenceCrossEntropy(values, classes: 3, labels: [1, 1]), relative: 1e-6)
        expectClose(loss.scalar, 1000, relative: 1e-6)
        let gradient = try #require(input.node.gradient)
        #expect(gradient.scalars.allSatisfy { $0.isFinite })
        // (softmax − onehot)/N with softmax rows (1, 0, 0) and (0, 1, 0).
        expectClose(gradient.scalars, [0.5, -0.5, 0, 0, 0, 0], relative: 1e-6, absolute: 1e-7, "gradient")
    }

    @Test("the gradient is (softmax − onehot)/N and matches finite differences")
    func gradientMatchesFiniteDifferences() throws {
        let x = logits
        let input = leaf(x, shape: [labels.count, classes])

        CrossEntropyLoss()(input.tensor, labels).backward()

        let numeric = centralDifferences(at: x) { referenceCrossEntropy($0, classes: classes, labels: labels) }
        expectClose(input.node.gradient, numeric, relative: 1e-4, absolute: 1e-6, "gradient vs finite differences")
        var analytic: [Double] = []
        for (row, label) in labels.enumerated() {
            let values = x[row * classes..<(row + 1) * classes]
            let exps = values.map { Foundation.exp($0 - values.max()!) }
            let total = exps.reduce(0, +)
            analytic += exps.enumerated().map { j, e in (e / total - (j == label ? 1 : 0)) / Double(labels.count) }
        }
        expectClose(input.node.gradient, analytic, relative: 1e-5, absolute: 1e-7, "gradient vs (softmax − onehot)/N")
    }
}

@Suite("Sparse categorical cross-entropy from probabilities (Keras semantics)")
struct SparseCategoricalCrossentropyTests {
    let classes = 4
    let labels = [2, 0, 3, 1, 1]
    /// Positive, unnormalized rows (sums between 0.4 and 4), away from the clip.
    var probabilities: [Double] { randomDoubles(labels.count * classes, in: 0.1...1, seed: 2) }

    @Test("the loss normalizes each row, clips to [1e-7, 1 − 1e-7] and averages −log p[label]")
    func lossMatchesKerasReference() {
        let p = probabilities
        let loss = SparseCategoricalCrossentropy()(tensor(p, shape: [labels.count, classes]), labels)
        expectClose(loss.scalar, referenceSparseCrossEntropy(p, classes: classes, labels: labels), relative: 1e-6)
    }

    @Test("a zero probability for the label costs −log(1e-7), and a certain label costs about 1e-7")
    func clippedProbabilities() {
        let zero = sparseCategoricalCrossentropy(probabilities: Tensor([0.5, 0, 0.5], shape: [1, 3]), labels: [1])
        expectClose(zero.scalar, -Foundation.log(1e-7), relative: 1e-6)
        #expect(zero.scalar.isFinite)

        let certain = sparseCategoricalCrossentropy(probabilities: Tensor([0, 1, 0], shape: [1, 3]), labels: [1])
        // Float's 1 − 1e-7 is 1 − 2⁻²³, so the clipped loss is within 2e-8 of 1e-7.
        expectClose(certain.scalar, 1e-7, relative: 0, absolute: 3e-8)
    }

    @Test("the gradient matches finite differences of the reference inside the clip range")
    func gradientMatchesFiniteDifferences() {
        let p = probabilities
        let input = leaf(p, shape: [labels.count, classes])

        SparseCategoricalCrossentropy()(input.tensor, labels).backward()

        let numeric = centralDifferences(at: p) { referenceSparseCrossEntropy($0, classes: classes, labels: labels) }
        expectClose(input.node.gradient, numeric, relative: 1e-4, absolute: 1e-6, "gradient")
    }

    @Test("rows where the clip is active receive no gradient, like the reference's flat region")
    func clippedRowHasZeroGradient() throws {
        let p: [Double] = [0.5, 0, 0.5, 0.2, 0.3, 0.5]
        let input = leaf(p, shape: [2, 3])

        sparseCategoricalCrossentropy(probabilities: input.tensor, labels: [1, 2]).backward()

        let gradient = try #require(input.node.gradient).scalars
        #expect(gradient[0..<3].allSatisfy { $0 == 0 }, "row 0 is clipped: \(gradient)")
        let numeric = centralDifferences(at: p, step: 1e-9) { referenceSparseCrossEntropy($0, classes: 3, labels: [1, 2]) }
        expectClose(gradient, numeric, relative: 1e-4, absolute: 1e-6, "gradient")
    }
}

@Suite("Double-softmax detector")
struct DoubleSoftmaxDetectorTests {
    @Test("a softmax output in the graph looks like probabilities")
    func softmaxNodeIsDetected() {
        let logits = leaf(randomDoubles(12, in: -3...3, seed: 3), shape: [3, 4])
        let probabilities = logits.tensor.softmax()
        #expect(probabilities.gradientNode?.operation == "softmax")
        #expect(DoubleSoftmaxDetector.looksLikeProbabilities(probabilities))
    }

    @Test("rows of non-negative values summing to 1 look like probabilities without a graph")
    func probabilityRowsAreDetected() {
        let rows = Tensor([0.2, 0.3, 0.5, 0.7, 0.1, 0.2], shape: [2, 3])
        #expect(rows.gradientNode == nil)
        #expect(DoubleSoftmaxDetector.looksLikeProbabilities(rows))
    }

    @Test("logits do not look like probabilities, with or without a graph")
    func logitsAreNotDetected() throws {
        let values = randomDoubles(12, in: -3...3, seed: 4)
        #expect(!DoubleSoftmaxDetector.looksLikeProbabilities(tensor(values, shape: [3, 4])))
        let linearOutput = try makeLinear(4, 4, seed: 5)(tensor(values, shape: [3, 4]))
        #expect(linearOutput.gradientNode?.operation == "linear")
        #expect(!DoubleSoftmaxDetector.looksLikeProbabilities(linearOutput))
        // Non-negative rows that do not sum to 1 are not probabilities either.
        #expect(!DoubleSoftmaxDetector.looksLikeProbabilities(Tensor([0.2, 0.3, 0.6, 0.1], shape: [2, 2])))
    }

    @Test("cross-entropy on a softmax output still computes the loss of those values as logits, and warns")
    func crossEntropyOnProbabilitiesWarnsButComputes() {
        let logits = leaf(randomDoubles(12, in: -3...3, seed: 6), shape: [3, 4])
        let probabilities = logits.tensor.softmax()

        let loss = crossEntropy(logits: probabilities, labels: [0, 1, 2])

        expectClose(loss.scalar, referenceCrossEntropy(doubles(probabilities), classes: 4, labels: [0, 1, 2]), relative: 1e-6)
        #expect(DoubleSoftmaxDetector.hasWarned)
        #expect(DoubleSoftmaxDetector.message.contains("SparseCategoricalCrossentropy"), "the warning says what to use")
    }
}
