// The batch-norm op with ghost batches and Batch Renormalization against a
// Double reference, gradients by finite differences, and the identities that
// tie it to plain batch norm.

@testable import NormKitCore
import Testing

/// Ghost-batch batch norm with Batch Renormalization in Double, from the
/// definitions: each run of `ghostBatchSize` samples along axis 0 normalized
/// with its own statistics, then y = γ·(x̂·r + d) + β with that run's r and d.
/// `corrections` nil computes r, d from `running` (if given); passing them
/// holds them constant, as the method's gradient does.
func referenceGhostRenorm(
    _ x: DoubleTensor, featureAxis: Int, gamma: [Double]?, beta: [Double]?, epsilon: Double, ghostBatchSize: Int?,
    running: (mean: [Double], variance: [Double], rMax: Double, dMax: Double)?,
    corrections fixed: [(r: [Double], d: [Double])]? = nil
) -> (output: DoubleTensor, groups: [(mean: [Double], variance: [Double])], corrections: [(r: [Double], d: [Double])]) {
    let samples = x.shape[0], perSample = x.count / samples
    let sampleShape = Array(x.shape.dropFirst())
    let axis = featureAxis < 0 ? featureAxis + x.shape.count : featureAxis
    let size = ghostBatchSize ?? samples
    var output: [Double] = []
    var groups: [(mean: [Double], variance: [Double])] = []
    var corrections: [(r: [Double], d: [Double])] = []
    for (k, start) in stride(from: 0, to: samples, by: size).enumerated() {
        let count = min(size, samples - start)
        let part = DoubleTensor(Array(x.values[start * perSample..<(start + count) * perSample]), shape: [count] + sampleShape)
        let normalized = referenceBatchNorm(part, featureAxis: featureAxis, gamma: nil, beta: nil, epsilon: epsilon)
        groups.append((normalized.mean, normalized.variance))
        var correction = (r: [Double](repeating: 1, count: normalized.mean.count),
                          d: [Double](repeating: 0, count: normalized.mean.count))
        if let fixed {
            correction = fixed[k]
        } else if let running {
            for c in normalized.mean.indices {
                let runningStd = (running.variance[c] + epsilon).squareRoot()
                let ratio = (normalized.variance[c] + epsilon).squareRoot() / runningStd
                correction.r[c] = min(max(ratio, 1 / running.rMax), running.rMax)
                correction.d[c] = min(max((normalized.mean[c] - running.mean[c]) / runningStd, -running.dMax), running.dMax)
            }
        }
        if running != nil || fixed != nil { corrections.append(correction) }
        for (i, value) in normalized.output.values.enumerated() {
            let c = Layout.multiIndex(of: i, in: part.shape)[axis]
            output.append((gamma?[c] ?? 1) * (value * correction.r[c] + correction.d[c]) + (beta?[c] ?? 0))
        }
    }
    return (DoubleTensor(output, shape: x.shape), groups, corrections)
}

/// A layout with a ghost batch size that leaves a smaller last ghost batch.
struct GhostLayout: Sendable, CustomTestStringConvertible {
    let shape: [Int], featureAxis: Int, ghostBatchSize: Int
    var channels: Int { shape[featureAxis < 0 ? featureAxis + shape.count : featureAxis] }
    var testDescription: String { "\(shape) features on \(featureAxis), ghost batches of \(ghostBatchSize)" }

    static let all = [
        GhostLayout(shape: [10, 3], featureAxis: 1, ghostBatchSize: 4),        // 4 + 4 + 2
        GhostLayout(shape: [5, 3, 4], featureAxis: 1, ghostBatchSize: 2),      // 2 + 2 + 1 (one sample, 4 values)
        GhostLayout(shape: [5, 2, 3], featureAxis: -1, ghostBatchSize: 3),     // channels-last, 3 + 2
        GhostLayout(shape: [3, 2, 2, 3], featureAxis: 1, ghostBatchSize: 2),   // (N, C, H, W), 2 + 1
    ]
}

@Suite("batchNorm op with ghost batches and Batch Renormalization")
struct GhostBatchRenormOpTests {
    static let epsilon: Float = 1e-5
    private var epsilon: Double { Double(Self.epsilon) }

    /// Input with a different offset and spread per channel.
    private func input(_ shape: [Int], featureAxis: Int, seed: UInt64) -> DoubleTensor {
        let axis = featureAxis < 0 ? featureAxis + shape.count : featureAxis
        let z = randomValues(shape, in: -1...1, seed: seed)
        return DoubleTensor((0..<z.count).map { flat in
            let c = Double(Layout.multiIndex(of: flat, in: shape)[axis])
            return Double(Float((0.5 + c) * z.values[flat] + 2 * c - 1))
        }, shape: shape)
    }

    /// Running estimates away from the batches', exact in Float; limits that clip some r and d.
    private func reference(_ channels: Int, seed: UInt64) -> BatchRenormalizationReference {
        BatchRenormalizationReference(
            runningMean: randomValues([channels], in: -1...1, seed: seed).values.map { Float($0) },
            runningVariance: randomValues([channels], in: 0.25...4, seed: seed + 1).values.map { Float($0) },
            rMax: 1.5, dMax: 0.75)
    }

    private func doubles(_ reference: BatchRenormalizationReference) -> (mean: [Double], variance: [Double], rMax: Double, dMax: Double) {
        (reference.runningMean.map { Double($0) }, reference.runningVariance.map { Double($0) },
         Double(reference.rMax), Double(reference.dMax))
    }

    @Test("output, per-ghost-batch statistics and r, d match the Double reference",
          arguments: GhostLayout.all, [false, true])
    func forwardMatchesReference(layout: GhostLayout, renormalizes: Bool) {
        let x = input(layout.shape, featureAxis: layout.featureAxis, seed: 800)
        let gamma = randomValues([layout.channels], in: 0.5...2, seed: 801)
        let beta = randomValues([layout.channels], seed: 802)
        let target = renormalizes ? reference(layout.channels, seed: 803) : nil

        let result = batchNorm(x.tensor, featureAxis: layout.featureAxis, gamma: gamma.tensor, beta: beta.tensor,
                               epsilon: Self.epsilon, ghostBatchSize: layout.ghostBatchSize, renormalizingToward: target)

        let expected = referenceGhostRenorm(x, featureAxis: layout.featureAxis, gamma: gamma.values, beta: beta.values,
                                            epsilon: epsilon, ghostBatchSize: layout.ghostBatchSize,
                                            running: target.map(doubles))
        expectClose(result.output, expected.output, relative: 1e-5, absolute: 1e-6, "output")
        #expect(result.statistics.count == expected.groups.count)
        for (k, group) in expected.groups.enumerated() where k < result.statistics.count {
            expectClose(result.statistics[k].mean, group.mean, relative: 1e-6, absolute: 1e-7, "ghost batch \(k) mean")
            expectClose(result.statistics[k].variance, group.variance, relative: 1e-5, absolute: 0, "ghost batch \(k) variance")
        }
        #expect(result.corrections.count == expected.corrections.count)
        expectClose(result.corrections.flatMap(\.r), expected.corrections.flatMap(\.r), relative: 1e-6, absolute: 0, "r")
        expectClose(result.corrections.flatMap(\.d), expected.corrections.flatMap(\.d), relative: 1e-6, absolute: 1e-7, "d")
        if renormalizes {
            let clipped = expected.corrections.flatMap(\.r).filter { $0 == 1.5 || $0 == 1 / 1.5 }.count
                + expected.corrections.flatMap(\.d).filter { abs($0) == 0.75 }.count
            #expect(clipped > 0, "the data clips some r or d")
        }
    }

    @Test("gradients of x, γ and β match finite differences with r and d held constant",
          arguments: GhostLayout.all, [false, true])
    func gradientsMatchFiniteDifferences(layout: GhostLayout, renormalizes: Bool) {
        let x = input(layout.shape, featureAxis: layout.featureAxis, seed: 810)
        let gamma = randomValues([layout.channels], in: 0.5...2, seed: 811)
        let beta = randomValues([layout.channels], seed: 812)
        let target = renormalizes ? reference(layout.channels, seed: 813) : nil
        // r and d at the point of evaluation: constants of the step.
        let fixed = referenceGhostRenorm(x, featureAxis: layout.featureAxis, gamma: nil, beta: nil, epsilon: epsilon,
                                         ghostBatchSize: layout.ghostBatchSize, running: target.map(doubles)).corrections
        for affine in [true, false] {
            let inputs = affine ? [x, gamma, beta] : [x]
            expectGradientsMatchFiniteDifferences(at: inputs) { t in
                batchNorm(t[0], featureAxis: layout.featureAxis, gamma: affine ? t[1] : nil, beta: affine ? t[2] : nil,
                          epsilon: Self.epsilon, ghostBatchSize: layout.ghostBatchSize, renormalizingToward: target).output
            } reference: { d in
                referenceGhostRenorm(d[0], featureAxis: layout.featureAxis, gamma: affine ? d[1].values : nil,
                                     beta: affine ? d[2].values : nil, epsilon: epsilon,
                                     ghostBatchSize: layout.ghostBatchSize, running: nil,
                                     corrections: renormalizes ? fixed : nil).output
            }
        }
    }

    @Test("one ghost batch with rMax = 1, dMax = 0 is plain batch norm, bit for bit, forward and backward")
    func degenerateOptionsArePlainBatchNorm() {
        let x = input([6, 3, 4], featureAxis: 1, seed: 820)
        let gamma = randomValues([3], in: 0.5...2, seed: 821), beta = randomValues([3], seed: 822)
        let seed = randomValues([6, 3, 4], seed: 823).tensor
        let plain = (makeLeaf(x), makeLeaf(gamma))
        let general = (makeLeaf(x), makeLeaf(gamma))
        let target = BatchRenormalizationReference(runningMean: [0.5, -1, 2], runningVariance: [4, 0.5, 1], rMax: 1, dMax: 0)

        let (y, _) = batchNorm(plain.0.tensor, gamma: plain.1.tensor, beta: beta.tensor, epsilon: Self.epsilon)
        let result = batchNorm(general.0.tensor, gamma: general.1.tensor, beta: beta.tensor, epsilon: Self.epsilon,
                               ghostBatchSize: 6, renormalizingToward: target)
        y.backward(gradient: seed)
        result.output.backward(gradient: seed)

        #expect(result.output.scalars == y.scalars)
        #expect(result.corrections == [RenormalizationCorrection(r: [1, 1, 1], d: [0, 0, 0])])
        #expect(general.0.node.gradient?.scalars == plain.0.node.gradient?.scalars)
        #expect(general.1.node.gradient?.scalars == plain.1.node.gradient?.scalars)
    }

    @Test("ghost batches and renormalization are one graph node whose inputs are x, γ and β")
    func oneGraphNode() throws {
        let layout = GhostLayout.all[1]
        let x = makeLeaf(input(layout.shape, featureAxis: 1, seed: 830))
        let gamma = makeLeaf(randomValues([3], in: 0.5...2, seed: 831))
        let beta = makeLeaf(randomValues([3], seed: 832))
        let result = batchNorm(x.tensor, gamma: gamma.tensor, beta: beta.tensor, epsilon: Self.epsilon,
                               ghostBatchSize: layout.ghostBatchSize, renormalizingToward: reference(3, seed: 833))
        let node = try #require(result.output.gradientNode)
        #expect(node.operation == "batchNorm")
        #expect(node.inputs.count == 3)
        #expect(node.inputs[0] === x.node && node.inputs[1] === gamma.node && node.inputs[2] === beta.node)
    }
}
