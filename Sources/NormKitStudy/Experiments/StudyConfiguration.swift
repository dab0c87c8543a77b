/// What `normkit study` runs. Every run of a pair (with and without BN) uses
/// the same seed, hence the same initial weights and the same batches.
public struct StudyConfiguration: Sendable, Codable {
    /// Training steps of the Figure-1 runs (the paper: 50,000).
    public var figureSteps: Int
    /// Evaluations along each Figure-1 run.
    public var evaluationCount: Int
    /// Steps of each run in the learning-rate and initialization sweeps.
    public var sweepSteps: Int
    /// Widths of the sigmoid network's hidden layers (the paper: 100, 100, 100).
    public var hiddenWidths: [Int]
    /// Mini-batch size of the sigmoid network (the paper: 60).
    public var batchSize: Int
    /// Plain SGD's learning rate for Figure 1 and the σ sweep (the paper does not say).
    public var learningRate: Double
    /// σ of the initial Gaussian weights for Figure 1 and the learning-rate sweep.
    public var initialStandardDeviation: Double
    public var learningRateGrid: [Double]
    public var sigmaGrid: [Double]
    /// A run "trains" when it never diverges and ends at or above this test accuracy.
    public var trainsThreshold: Double
    /// Epochs of the seed model (Adam 1e-3, batches of 32, as `normkit train`).
    public var seedModelEpochs: Int
    public var seed: UInt64

    /// The default study: about two minutes on two loaded cores with the embedded slice.
    /// `figureSteps` scales the sweeps too: a fifth of it per run, between 300 and 5,000 steps
    /// (the sweeps hold 32 runs; at the paper's 50,000 steps a fifth each would take hours).
    public static func standard(figureSteps: Int = 10_000, seed: UInt64 = 0) -> StudyConfiguration {
        StudyConfiguration(figureSteps: figureSteps, evaluationCount: 40, sweepSteps: min(5000, max(300, figureSteps / 5)),
                           hiddenWidths: [100, 100, 100], batchSize: 60, learningRate: 0.5, initialStandardDeviation: 0.1,
                           learningRateGrid: [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100],
                           sigmaGrid: [0.01, 0.03, 0.1, 0.3, 1, 3, 10], trainsThreshold: 0.5,
                           seedModelEpochs: 5, seed: seed)
    }

    /// `--quick`: the same study with fewer steps and coarser grids (well under three minutes).
    public static func quick(seed: UInt64 = 0) -> StudyConfiguration {
        var configuration = standard(figureSteps: 2500, seed: seed)
        configuration.evaluationCount = 50
        configuration.sweepSteps = 500
        configuration.learningRateGrid = [0.01, 0.1, 1, 10, 100]
        configuration.sigmaGrid = [0.01, 0.1, 1, 10]
        configuration.seedModelEpochs = 3
        return configuration
    }

    public var evaluationInterval: Int { max(1, figureSteps / max(evaluationCount, 1)) }
}
