import NormKit

/// One training run of `SigmoidNetwork` with plain SGD on mini-batches.
public struct SigmoidRunConfiguration: Sendable {
    public var batchNorm: Bool
    public var hiddenWidths: [Int]
    public var steps: Int
    public var batchSize: Int
    public var learningRate: Double
    public var initialStandardDeviation: Double
    /// Seeds the initial weights (seed) and the batch order (seed + 1): paired runs share both.
    public var seed: UInt64
    /// Evaluate every this many steps (and at the end); nil evaluates only at the end.
    public var evaluationInterval: Int?
    /// The last-hidden-layer unit whose sigmoid input is tracked (Figure 1 b, c).
    public var trackedUnit: Int

    public init(batchNorm: Bool, hiddenWidths: [Int] = [100, 100, 100], steps: Int, batchSize: Int = 60, learningRate: Double, initialStandardDeviation: Double,
                seed: UInt64, evaluationInterval: Int? = nil, trackedUnit: Int = 0) {
        self.batchNorm = batchNorm
        self.hiddenWidths = hiddenWidths
        self.steps = steps
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.initialStandardDeviation = initialStandardDeviation
        self.seed = seed
        self.evaluationInterval = evaluationInterval
        self.trackedUnit = trackedUnit
    }
}

/// The measurements at one evaluation.
public struct CurvePoint: Sendable, Codable, Equatable {
    public var step: Int
    public var testAccuracy: Double
    public var testLoss: Double
    /// Accuracy on a fixed subset of the training set, in inference mode.
    public var trainAccuracy: Double
    /// Percentiles of the tracked sigmoid's input over the whole test set.
    public var sigmoidInput: PercentileTriple?
}

public struct SigmoidRunResult: Sendable, Codable {
    public var batchNorm: Bool
    public var learningRate: Double
    public var initialStandardDeviation: Double
    public var curve: [CurvePoint]
    /// The step at which the training loss stopped being finite, if it did.
    public var divergedAtStep: Int?

    public var final: CurvePoint { curve.last! }

    /// Trained = never diverged and the final test accuracy reached `threshold`.
    public func trains(threshold: Double) -> Bool { divergedAtStep == nil && final.testAccuracy >= threshold }

    /// The final test accuracy, or chance (1 / `classCount`) for a run that diverged: its
    /// non-finite outputs would score arbitrarily, and a sweep plots and compares it as chance.
    public func finalTestAccuracy(classCount: Int) -> Double {
        divergedAtStep == nil ? final.testAccuracy : 1 / Double(classCount)
    }
}

/// Data for the sigmoid-network runs: training batches, the test set and the
/// training subset whose accuracy measures fitting.
public struct StudyData: Sendable {
    public let train: LabeledImages
    public let test: LabeledImages
    public let trainProbe: LabeledImages

    public init(_ dataset: MNISTDataset, trainProbeCount: Int = 2000) {
        train = dataset.train
        test = dataset.test
        trainProbe = dataset.train.prefix(min(trainProbeCount, dataset.train.count))
    }

    public var classCount: Int { max(train.classCount, 10) }
}

/// Trains one `SigmoidNetwork` and measures it at every evaluation step.
/// `stepFinished(step, loss)` is called after each step (for progress).
public func runSigmoidNetwork(_ configuration: SigmoidRunConfiguration, data: StudyData,
                              stepFinished: (Int, Double) -> Void = { _, _ in }) throws -> SigmoidRunResult {
    var weightGenerator = SeededGenerator(seed: configuration.seed)
    let network = SigmoidNetwork(inputFeatures: data.train.featureCount, hiddenWidths: configuration.hiddenWidths,
                                 classes: data.classCount,
                                 batchNorm: configuration.batchNorm,
                                 initialStandardDeviation: Float(configuration.initialStandardDeviation),
                                 generator: &weightGenerator)
    let optimizer = SGD(network.trainableParameters(), learningRate: Float(configuration.learningRate))
    let criterion = CrossEntropyLoss()
    let loader = DataLoader(data.train, batchSize: configuration.batchSize, shuffle: true, dropsLastPartialBatch: true,
                            generator: SeededGenerator(seed: configuration.seed &+ 1))
    precondition(loader.batchCount > 0, "runSigmoidNetwork: \(data.train.count) training examples, fewer than one batch of \(configuration.batchSize)")
    var result = SigmoidRunResult(batchNorm: configuration.batchNorm, learningRate: configuration.learningRate,
                                  initialStandardDeviation: configuration.initialStandardDeviation, curve: [])
    var step = 0
    training: while step < configuration.steps {
        network.train()
        for (inputs, labels) in loader {
            optimizer.zeroGrad()
            let loss = criterion(try network(inputs), labels)
            loss.backward()
            optimizer.step()
            step += 1
            stepFinished(step, Double(loss.scalar))
            if !loss.scalar.isFinite {
                result.divergedAtStep = step
                break training
            }
            if let interval = configuration.evaluationInterval, step % interval == 0, step < configuration.steps {
                result.curve.append(try evaluate(network, data: data, step: step, trackedUnit: configuration.trackedUnit))
                network.train()
            }
            if step == configuration.steps { break training }
        }
    }
    if step < configuration.steps { stepFinished(configuration.steps, .nan) }  // a diverged run counts as done
    result.curve.append(try evaluate(network, data: data, step: step, trackedUnit: configuration.trackedUnit))
    return result
}

/// Test accuracy and loss, training-subset accuracy and the tracked unit's
/// input percentiles, in inference mode without recording a graph.
func evaluate(_ network: SigmoidNetwork, data: StudyData, step: Int, trackedUnit: Int) throws -> CurvePoint {
    try network.withMode(.inference) {
        try Autodiff.withoutRecording {
            var trackedInputs: [Float] = []
            var lossSum = 0.0
            let testCorrect = try countCorrect(network, data.test) { logits, labels, lastInput in
                lossSum += Double(crossEntropy(logits: logits, labels: labels).scalar) * Double(labels.count)
                let width = lastInput.shape[1]
                lastInput.withUnsafeBufferPointer { values in
                    for row in 0..<labels.count { trackedInputs.append(values[row * width + trackedUnit]) }
                }
            }
            let trainCorrect = try countCorrect(network, data.trainProbe) { _, _, _ in }
            let finite = trackedInputs.allSatisfy(\.isFinite)
            return CurvePoint(step: step, testAccuracy: Double(testCorrect) / Double(data.test.count),
                              testLoss: lossSum / Double(data.test.count),
                              trainAccuracy: Double(trainCorrect) / Double(data.trainProbe.count),
                              sigmoidInput: finite ? PercentileTriple(of: trackedInputs) : nil)
        }
    }
}

private func countCorrect(_ network: SigmoidNetwork, _ images: LabeledImages,
                          _ observe: (Tensor, [Int], Tensor) -> Void) throws -> Int {
    var correct = 0
    for (inputs, labels) in DataLoader(images, batchSize: 1000) {
        let (logits, lastInput) = try network.forwardCapturingLastInput(inputs)
        correct += zip(logits.argmax(axis: -1), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        observe(logits, labels, lastInput)
    }
    return correct
}
