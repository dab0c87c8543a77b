import NormKitCore
import Testing

/// Batch normalization in Double, written from the definition: per channel,
/// μ = mean(x), σ² = mean((x − μ)²), y = γ·(x − μ)/√(σ² + ε) + β; with
/// `given` statistics, μ and σ² are those constants instead.
func referenceBatchNorm(
    _ x: DoubleTensor, featureAxis: Int, gamma: [Double]?, beta: [Double]?, epsilon: Double,
    given: (mean: [Double], variance: [Double])? = nil
) -> (output: DoubleTensor, mean: [Double], variance: [Double]) {
    let axis = featureAxis < 0 ? featureAxis + x.shape.count : featureAxis
    let channels = x.shape[axis]
    let channelOf = (0..<x.count).map { Layout.multiIndex(of: $0, in: x.shape)[axis] }
    let m = Double(x.count / channels)
    var mean = [Double](repeating: 0, count: channels), variance = [Double](repeating: 0, count: channels)
    if let given {
        (mean, variance) = given
    } else {
        for (value, c) in zip(x.values, channelOf) { mean[c] += value / m }
        for (value, c) in zip(x.values, channelOf) { variance[c] += (value - mean[c]) * (value - mean[c]) / m }
    }
    let output = zip(x.values, channelOf).map { value, c in
        (gamma?[c] ?? 1) * (value - mean[c]) / (variance[c] + epsilon).squareRoot() + (beta?[c] ?? 0)
    }
    return (DoubleTensor(output, shape: x.shape), mean, variance)
}

/// An input shape and the axis its features are on.
struct BatchNormLayout: Sendable, CustomTestStringConvertible {
    let shape: [Int], featureAxis: Int
    var channels: Int { shape[featureAxis < 0 ? featureAxis + shape.count : featureAxis] }
    var testDescription: String { "\(shape) features on \(featureAxis)" }

    static let all = [
        BatchNormLayout(shape: [8, 5], featureAxis: 1),
        BatchNormLayout(shape: [4, 3, 7], featureAxis: 1),    // channels-first (N, C, L)
        BatchNormLayout(shape: [4, 6, 3], featureAxis: -1),   // channels-last (N, L, C)
    ]
}

/// Which of γ and β are passed.
enum Affine: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case none, gammaOnly, betaOnly, both
    var hasGamma: Bool { self == .gammaOnly || self == .both }
    var hasBeta: Bool { self == .betaOnly || self == .both }
    var testDescription: String { rawValue }
}

enum BatchNormMode: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case training, inference
    var testDescription: String { rawValue }
}

@Suite("batchNorm op")
struct BatchNormOpTests {
    static let epsilon: Float = 1e-5
    private var epsilon: Double { Double(Self.epsilon) }

    /// Input with a different offset and spread per channel, so a mix-up of channels shows.
    private func input(_ layout: BatchNormLayout, seed: UInt64) -> DoubleTensor {
        let axis = layout.featureAxis < 0 ? layout.featureAxis + layout.shape.count : layout.featureAxis
        let z = randomValues(layout.shape, in: -1...1, seed: seed)
        return DoubleTensor((0..<z.count).map { flat in
            let c = Double(Layout.multiIndex(of: flat, in: layout.shape)[axis])
            return Double(Float((0.5 + c) * z.values[flat] + 2 * c - 1))
        }, shape: layout.shape)
    }

    /// Running statistics for inference mode, exactly representable in Float.
    private func runningStatistics(_ channels: Int, seed: UInt64) -> (mean: [Float], variance: [Float]) {
        (randomValues([channels], in: -1...1, seed: seed).values.map { Float($0) },
         randomValues([channels], in: 0.5...2, seed: seed + 1).values.map { Float($0) })
    }

    @Test(arguments: BatchNormLayout.all, Affine.allCases)
    func trainingOutputAndBatchStatisticsMatchDoubleReference(layout: BatchNormLayout, affine: Affine) {
        let x = input(layout, seed: 120)
        let gamma = affine.hasGamma ? randomValues([layout.channels], in: 0.5...2, seed: 121) : nil
        let beta = affine.hasBeta ? randomValues([layout.channels], seed: 122) : nil
        let (output, statistics) = batchNorm(x.tensor, featureAxis: layout.featureAxis, gamma: gamma?.tensor,
                                             beta: beta?.tensor, epsilon: Self.epsilon)
        let expected = referenceBatchNorm(x, featureAxis: layout.featureAxis, gamma: gamma?.values,
                                          beta: beta?.values, epsilon: epsilon)
        expectClose(output, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        expectClose(statistics.mean, expected.mean, relative: 1e-5, absolute: 1e-7, "mean")
        expectClose(statistics.variance, expected.variance, relative: 1e-5, absolute: 0, "biased variance")
        expectClose(statistics.inverseStandardDeviation, expected.variance.map { 1 / ($0 + epsilon).squareRoot() },
                    relative: 1e-5, absolute: 0, "1/√(σ² + ε)")
        #expect(statistics.count == layout.shape.reduce(1, *) / layout.channels)
        #expect(statistics.isFinite)
    }

    @Test(arguments: BatchNormLayout.all, Affine.allCases)
    func inferenceOutputUsesTheGivenStatistics(layout: BatchNormLayout, affine: Affine) {
        let x = input(layout, seed: 123)
        let gamma = affine.hasGamma ? randomValues([layout.channels], in: 0.5...2, seed: 124) : nil
        let beta = affine.hasBeta ? randomValues([layout.channels], seed: 125) : nil
        let running = runningStatistics(layout.channels, seed: 126)
        let (output, statistics) = batchNorm(x.tensor, featureAxis: layout.featureAxis, gamma: gamma?.tensor,
                                             beta: beta?.tensor, epsilon: Self.epsilon, using: running)
        let expected = referenceBatchNorm(
            x, featureAxis: layout.featureAxis, gamma: gamma?.values, beta: beta?.values, epsilon: epsilon,
            given: (running.mean.map { Double($0) }, running.variance.map { Double($0) }))
        expectClose(output, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(statistics.mean == running.mean, "inference reports the statistics it used")
        #expect(statistics.variance == running.variance)
    }

    @Test(arguments: BatchNormLayout.all, BatchNormMode.allCases)
    func gradientsForInputGammaAndBetaMatchFiniteDifferences(layout: BatchNormLayout, mode: BatchNormMode) {
        let running = runningStatistics(layout.channels, seed: 127)
        let given = mode == .inference ? running : nil
        let givenDouble = given.map { ($0.mean.map { Double($0) }, $0.variance.map { Double($0) }) }
        for affine in Affine.allCases {
            var inputs = [input(layout, seed: 128)]
            if affine.hasGamma { inputs.append(randomValues([layout.channels], in: 0.5...2, seed: 129)) }
            if affine.hasBeta { inputs.append(randomValues([layout.channels], seed: 130)) }
            let gammaIndex = affine.hasGamma ? 1 : nil
            let betaIndex = affine.hasBeta ? inputs.count - 1 : nil
            expectGradientsMatchFiniteDifferences(at: inputs) { t in
                batchNorm(t[0], featureAxis: layout.featureAxis, gamma: gammaIndex.map { t[$0] },
                          beta: betaIndex.map { t[$0] }, epsilon: Self.epsilon, using: given).output
            } reference: { d in
                // In inference mode the statistics are constants; in training they follow x.
                referenceBatchNorm(d[0], featureAxis: layout.featureAxis, gamma: gammaIndex.map { d[$0].values },
                                   beta: betaIndex.map { d[$0].values }, epsilon: epsilon, given: givenDouble).output
            }
        }
    }

    @Test(arguments: BatchNormMode.allCases)
    func parametersGetGradientsWhenTheInputIsConstant(mode: BatchNormMode) {
        let layout = BatchNormLayout.all[1]
        let x = input(layout, seed: 131)
        let given = mode == .inference ? runningStatistics(layout.channels, seed: 132) : nil
        let givenDouble = given.map { ($0.mean.map { Double($0) }, $0.variance.map { Double($0) }) }
        let gamma = randomValues([3], in: 0.5...2, seed: 133), beta = randomValues([3], seed: 134)
        expectGradientsMatchFiniteDifferences(at: [gamma, beta]) { t in
            batchNorm(x.tensor, featureAxis: 1, gamma: t[0], beta: t[1], epsilon: Self.epsilon, using: given).output
        } reference: { d in
            referenceBatchNorm(x, featureAxis: 1, gamma: d[0].values, beta: d[1].values, epsilon: epsilon,
                               given: givenDouble).output
        }
    }

    @Test func batchNormIsOneGraphNode() {
        let x = input(BatchNormLayout.all[0], seed: 135).tensor.attached(to: GradientNode(leaf: "x"))
        let (output, _) = batchNorm(x, gamma: Tensor.ones([5]), beta: Tensor.zeros([5]), epsilon: Self.epsilon)
        #expect(output.gradientNode?.operation == "batchNorm")
    }

    // MARK: Numerics

    @Test(arguments: [BatchNormLayout(shape: [512, 2], featureAxis: 1), BatchNormLayout(shape: [16, 2, 32], featureAxis: 1)])
    func largeMeanTinySpreadVarianceIsAccurate(layout: BatchNormLayout) {
        // Channel 1 has mean 1e4 and std 1e-3: E[x²] − E[x]² would cancel every digit.
        let z = randomValues(layout.shape, in: -1.7...1.7, seed: 136)   // std ≈ 1
        let x = DoubleTensor((0..<z.count).map { flat in
            let c = Layout.multiIndex(of: flat, in: layout.shape)[1]
            return Double(Float(c == 1 ? 1e4 + 1e-3 * z.values[flat] : z.values[flat]))
        }, shape: layout.shape)
        let (output, statistics) = batchNorm(x.tensor, gamma: nil, beta: nil, epsilon: Self.epsilon)
        // The reference sees the same Float inputs, so only NormKit's arithmetic is judged.
        let expected = referenceBatchNorm(x, featureAxis: 1, gamma: nil, beta: nil, epsilon: epsilon)
        #expect(expected.variance[1] > 1e-7 && expected.variance[1] < 1e-5, "the test data has the intended spread")
        expectClose(statistics.variance, expected.variance, relative: 1e-3, absolute: 0, "variance")
        expectClose(statistics.mean, expected.mean, relative: 1e-7, absolute: 1e-7, "mean")
        #expect(output.scalars.allSatisfy { $0.isFinite })
    }

    @Test(arguments: [(1e4, 1e-3), (1024, 0.3), (100, 1e-2)].flatMap { statistics in
        [[256, 2], [16, 2, 16]].map { (statistics.0, statistics.1, $0) }
    })
    func largeMeanChannelKeepsOutputAndGradientsAccurate(mean: Double, spread: Double, shape: [Int]) {
        // Channel 1 sits at `mean` with a tiny spread; x − μ must not be lost to Float
        // rounding of terms of size |μ|·invstd, in the forward or in the pullback.
        let z = randomValues(shape, in: -1.7...1.7, seed: 138)
        let x = DoubleTensor((0..<z.count).map { flat in
            Double(Float(Layout.multiIndex(of: flat, in: shape)[1] == 1 ? mean + spread * z.values[flat] : z.values[flat]))
        }, shape: shape)
        let gamma = DoubleTensor([1.5, 0.75], shape: [2]), beta = DoubleTensor([0.1, -0.2], shape: [2])
        // Gradients reach γ·invstd ≈ 230 here: 1e-4 absolute is a few Float ulps of that scale.
        // h = 1e-5 keeps the Double reference's rounding (x ≈ 1e4) well below the tolerance.
        expectGradientsMatchFiniteDifferences(at: [x, gamma, beta], relative: 1e-4, absolute: 1e-4,
                                              forwardRelative: 1e-5, forwardAbsolute: 1e-5, step: 1e-5) { t in
            batchNorm(t[0], gamma: t[1], beta: t[2], epsilon: Self.epsilon).output
        } reference: { d in
            referenceBatchNorm(d[0], featureAxis: 1, gamma: d[1].values, beta: d[2].values, epsilon: epsilon).output
        }
    }

    @Test(arguments: [BatchNormLayout(shape: [6, 3], featureAxis: 1), BatchNormLayout(shape: [4, 3, 5], featureAxis: 1)])
    func constantChannelHasZeroVarianceAndOutputsBeta(layout: BatchNormLayout) {
        let constant: Float = 3.7
        let base = randomValues(layout.shape, seed: 137)
        let values = (0..<base.count).map { flat -> Float in
            Layout.multiIndex(of: flat, in: layout.shape)[1] == 2 ? constant : Float(base.values[flat])
        }
        let gamma = Tensor([1, 1, 1.5]), beta = Tensor([0, 0, 0.25])
        let node = GradientNode(leaf: "x")
        let (output, statistics) = batchNorm(Tensor(values, shape: layout.shape).attached(to: node),
                                             gamma: gamma, beta: beta, epsilon: Self.epsilon)
        #expect(statistics.variance[2] == 0, "a constant channel's variance is exactly 0, never negative")
        #expect(statistics.mean[2] == constant)
        #expect(statistics.isFinite)
        // x − μ is exactly 0, so the output is exactly β (invstd = 1/√ε is large but finite).
        let channelOutputs = zip(values.indices, output.scalars)
            .filter { Layout.multiIndex(of: $0.0, in: layout.shape)[1] == 2 }.map(\.1)
        #expect(channelOutputs.count == values.count / 3)
        #expect(channelOutputs.allSatisfy { $0 == 0.25 }, "\(channelOutputs)")
        output.backward(gradient: Tensor.ones(layout.shape))
        #expect(node.gradient?.scalars.allSatisfy { $0.isFinite } == true)
    }

    /// The pullback writes dx over dy when it holds dy's only reference (here the
    /// gradient of y · w, which the product's pullback made) and into a new tensor
    /// when dy is shared (here the caller's seed w itself): the same dy gives the
    /// same input gradient bit for bit, and the caller's seed keeps its values.
    /// Ghost batches of 2 overwrite dy group by group.
    @Test(arguments: [BatchNormLayout(shape: [4, 3, 5, 6], featureAxis: 1),
                      BatchNormLayout(shape: [4, 5, 6, 3], featureAxis: -1)], [nil, 2])
    func inputGradientIsTheSameWhetherDyIsOverwrittenOrShared(layout: BatchNormLayout, ghostBatchSize: Int?) {
        let x = input(layout, seed: 995).tensor
        let gamma = randomValues([layout.channels], in: 0.5...2, seed: 996).tensor
        let w = randomValues(layout.shape, seed: 997).tensor
        let seedValues = w.scalars
        func inputGradient(_ backward: (Tensor) -> Void) -> [Float] {
            let node = GradientNode(leaf: "x")
            let y = batchNorm(x.attached(to: node), featureAxis: layout.featureAxis, gamma: gamma, beta: nil,
                              epsilon: Self.epsilon, ghostBatchSize: ghostBatchSize, renormalizingToward: nil).output
            backward(y)
            return node.gradient?.scalars ?? []
        }
        let overwritten = inputGradient { y in (y * w).sum().backward() }
        let shared = inputGradient { y in y.backward(gradient: w) }
        #expect(overwritten.count == x.scalarCount)
        #expect(overwritten == shared)
        #expect(w.scalars == seedValues, "the caller's seed gradient is left as it was")
    }

    @Test func nonFiniteInputMakesTheStatisticsNonFinite() {
        var values = [Float](repeating: 1, count: 12)
        values[4] = .nan
        let (_, statistics) = batchNorm(Tensor(values, shape: [4, 3]), gamma: nil, beta: nil, epsilon: Self.epsilon)
        #expect(!statistics.isFinite)
    }

    @Test func gammaWithTheWrongFeatureCountStopsWithBothShapes() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = batchNorm(Tensor.zeros([8, 5]), gamma: Tensor.ones([4]), beta: nil, epsilon: 1e-5)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[4]") && message.contains("[8, 5]"), "message: \(message)")
    }
}
