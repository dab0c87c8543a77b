import NormKitCore
import Testing

/// Normalization in Double from the definition: elements with the same
/// `statisticsKey` (computed from their multi-index) share μ and the biased σ²;
/// y = γ[k]·(x − μ)/√(σ² + ε) + β[k] with k = `parameterKey`. With `given`
/// statistics (per statistics key) μ and σ² are those constants instead.
func referenceNormalize(
    _ x: DoubleTensor, statisticsKey: ([Int]) -> Int, parameterKey: ([Int]) -> Int,
    gamma: [Double]?, beta: [Double]?, epsilon: Double, given: (mean: [Double], variance: [Double])? = nil
) -> DoubleTensor {
    let indices = (0..<x.count).map { Layout.multiIndex(of: $0, in: x.shape) }
    let keys = indices.map(statisticsKey)
    let keyCount = (keys.max() ?? -1) + 1
    var count = [Double](repeating: 0, count: keyCount), mean = count, variance = count
    for (value, k) in zip(x.values, keys) { count[k] += 1; mean[k] += value }
    for k in 0..<keyCount { mean[k] /= count[k] }
    for (value, k) in zip(x.values, keys) { variance[k] += (value - mean[k]) * (value - mean[k]) / count[k] }
    if let given { (mean, variance) = given }
    return DoubleTensor(x.values.indices.map { i in
        let k = keys[i], p = parameterKey(indices[i])
        return (gamma?[p] ?? 1) * (x.values[i] - mean[k]) / (variance[k] + epsilon).squareRoot() + (beta?[p] ?? 0)
    }, shape: x.shape)
}

/// LayerNorm over the trailing `normalizedRank` dims: one row per leading index, γ elementwise.
func referenceLayerNorm(_ x: DoubleTensor, normalizedRank: Int, gamma: [Double]?, beta: [Double]?,
                        epsilon: Double) -> DoubleTensor {
    let lead = x.shape.count - normalizedRank
    let trailingShape = Array(x.shape[lead...])
    return referenceNormalize(
        x, statisticsKey: { Layout.flatIndex(Array($0[..<lead]), in: Array(x.shape[..<lead])) },
        parameterKey: { Layout.flatIndex(Array($0[lead...]), in: trailingShape) },
        gamma: gamma, beta: beta, epsilon: epsilon)
}

/// GroupNorm of (N, C, S…): channel c is in group c / (C/G); statistics per (n, group); γ per channel.
func referenceGroupNorm(_ x: DoubleTensor, groups: Int, gamma: [Double]?, beta: [Double]?,
                        epsilon: Double) -> DoubleTensor {
    let perGroup = x.shape[1] / groups
    return referenceNormalize(x, statisticsKey: { $0[0] * groups + $0[1] / perGroup }, parameterKey: { $0[1] },
                              gamma: gamma, beta: beta, epsilon: epsilon)
}

/// InstanceNorm of (N, C, S…): statistics per (n, c), or the given per-(n, c) constants; γ per channel.
func referenceInstanceNorm(_ x: DoubleTensor, gamma: [Double]?, beta: [Double]?, epsilon: Double,
                           given: (mean: [Double], variance: [Double])? = nil) -> DoubleTensor {
    let channels = x.shape[1]
    return referenceNormalize(x, statisticsKey: { $0[0] * channels + $0[1] }, parameterKey: { $0[1] },
                              gamma: gamma, beta: beta, epsilon: epsilon, given: given)
}

@Suite("groupNorm op (LayerNorm, GroupNorm, InstanceNorm)")
struct GroupNormOpTests {
    static let epsilon: Float = 1e-5
    private var epsilon: Double { Double(Self.epsilon) }

    /// Input with a different offset and spread per (leading index, channel), so mix-ups show.
    private func input(_ shape: [Int], seed: UInt64) -> DoubleTensor {
        let z = randomValues(shape, in: -1...1, seed: seed)
        return DoubleTensor((0..<z.count).map { flat in
            let index = Layout.multiIndex(of: flat, in: shape)
            let c = Double(index.count > 1 ? index[1] : 0), n = Double(index[0])
            return Double(Float((0.5 + 0.5 * c) * z.values[flat] + c - n))
        }, shape: shape)
    }

    /// Inputs for a gradient check: x, then γ and β when `affine` asks for them, shaped `parameterShape`.
    private func checkInputs(_ shape: [Int], parameterShape: [Int], affine: Affine,
                             seed: UInt64) -> (inputs: [DoubleTensor], gammaIndex: Int?, betaIndex: Int?) {
        var inputs = [input(shape, seed: seed)]
        if affine.hasGamma { inputs.append(randomValues(parameterShape, in: -2...2, seed: seed + 1)) }
        if affine.hasBeta { inputs.append(randomValues(parameterShape, seed: seed + 2)) }
        return (inputs, affine.hasGamma ? 1 : nil, affine.hasBeta ? inputs.count - 1 : nil)
    }

    // MARK: Forward and gradients against finite differences, per op and option

    @Test("layerNorm: forward and gradients of x, γ, β match finite differences",
          arguments: [([4, 6], 1), ([2, 3, 4], 2), ([2, 3, 4], 1), ([5], 1)], Affine.allCases)
    func layerNormGradients(shapeAndRank: ([Int], Int), affine: Affine) {
        let (shape, rank) = shapeAndRank
        let normalizedShape = Array(shape.suffix(rank))
        let (inputs, gammaIndex, betaIndex) = checkInputs(shape, parameterShape: normalizedShape, affine: affine,
                                                          seed: 200)
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            layerNorm(t[0], normalizedShape: normalizedShape, gamma: gammaIndex.map { t[$0] },
                      beta: betaIndex.map { t[$0] }, epsilon: Self.epsilon)
        } reference: { d in
            referenceLayerNorm(d[0], normalizedRank: rank, gamma: gammaIndex.map { d[$0].values },
                               beta: betaIndex.map { d[$0].values }, epsilon: epsilon)
        }
    }

    @Test("groupNorm: forward and gradients of x, γ, β match finite differences",
          arguments: [([3, 6, 5], 2), ([2, 4, 2, 3], 4), ([4, 6], 3), ([2, 4, 3], 1), ([1, 4, 2, 2, 2], 2)],
          Affine.allCases)
    func groupNormGradients(shapeAndGroups: ([Int], Int), affine: Affine) {
        let (shape, groups) = shapeAndGroups
        let (inputs, gammaIndex, betaIndex) = checkInputs(shape, parameterShape: [shape[1]], affine: affine, seed: 210)
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            groupNorm(t[0], groupCount: groups, gamma: gammaIndex.map { t[$0] }, beta: betaIndex.map { t[$0] },
                      epsilon: Self.epsilon)
        } reference: { d in
            referenceGroupNorm(d[0], groups: groups, gamma: gammaIndex.map { d[$0].values },
                               beta: betaIndex.map { d[$0].values }, epsilon: epsilon)
        }
    }

    @Test("instanceNorm: forward and gradients of x, γ, β match finite differences",
          arguments: [[2, 3, 5], [2, 2, 3, 3], [1, 2, 2, 2, 3]], Affine.allCases)
    func instanceNormGradients(shape: [Int], affine: Affine) {
        let (inputs, gammaIndex, betaIndex) = checkInputs(shape, parameterShape: [shape[1]], affine: affine, seed: 220)
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            instanceNorm(t[0], gamma: gammaIndex.map { t[$0] }, beta: betaIndex.map { t[$0] }, epsilon: Self.epsilon)
        } reference: { d in
            referenceInstanceNorm(d[0], gamma: gammaIndex.map { d[$0].values }, beta: betaIndex.map { d[$0].values },
                                  epsilon: epsilon)
        }
    }

    @Test("with given statistics (running estimates) they are constants: dx = dy·γ·invstd",
          arguments: Affine.allCases)
    func givenStatisticsAreConstantsInThePullback(affine: Affine) {
        let shape = [2, 3, 4]
        let layout = GroupNormLayout.instanceNorm(shape: shape)
        let mean = randomValues([layout.rows], in: -1...1, seed: 230).values.map { Float($0) }
        let variance = randomValues([layout.rows], in: 0.5...2, seed: 231).values.map { Float($0) }
        let givenDouble = (mean.map { Double($0) }, variance.map { Double($0) })
        let (inputs, gammaIndex, betaIndex) = checkInputs(shape, parameterShape: [3], affine: affine, seed: 232)
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            groupNorm(t[0], layout: layout, gamma: gammaIndex.map { t[$0] }, beta: betaIndex.map { t[$0] },
                      epsilon: Self.epsilon, using: (mean, variance)).output
        } reference: { d in
            referenceInstanceNorm(d[0], gamma: gammaIndex.map { d[$0].values }, beta: betaIndex.map { d[$0].values },
                                  epsilon: epsilon, given: givenDouble)
        }
    }

    @Test func statisticsAreReportedPerRow() {
        let x = input([3, 4, 5], seed: 233)
        let (_, statistics) = groupNorm(x.tensor, layout: .groupNorm(shape: [3, 4, 5], groupCount: 2), gamma: nil,
                                        beta: nil, epsilon: Self.epsilon)
        #expect(statistics.mean.count == 6 && statistics.count == 10)
        // Row (n = 1, group 1) holds channels 2 and 3 of sample 1.
        let values = (0..<x.count).filter {
            let index = Layout.multiIndex(of: $0, in: x.shape)
            return index[0] == 1 && index[1] >= 2
        }.map { x.values[$0] }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
        #expect(isClose(Double(statistics.mean[3]), mean, relative: 1e-6, absolute: 1e-7))
        #expect(isClose(Double(statistics.variance[3]), variance, relative: 1e-6, absolute: 0))
        #expect(isClose(Double(statistics.inverseStandardDeviation[3]), 1 / (variance + epsilon).squareRoot(),
                        relative: 1e-6, absolute: 0))
        #expect(statistics.isFinite)
    }

    @Test func groupNormIsOneGraphNode() {
        let x = input([2, 4, 3], seed: 234).tensor.attached(to: GradientNode(leaf: "x"))
        let y = groupNorm(x, groupCount: 2, gamma: Tensor.ones([4]), beta: Tensor.zeros([4]))
        #expect(y.gradientNode?.operation == "groupNorm")
    }

    @Test func layerNormParameterGradientsKeepTheParameterShape() {
        let x = input([3, 2, 4], seed: 235).tensor
        let gammaNode = GradientNode(leaf: "γ"), betaNode = GradientNode(leaf: "β")
        let y = layerNorm(x, normalizedShape: [2, 4], gamma: Tensor.ones([2, 4]).attached(to: gammaNode),
                          beta: Tensor.zeros([2, 4]).attached(to: betaNode))
        y.backward(gradient: Tensor.ones([3, 2, 4]))
        #expect(gammaNode.gradient?.shape == [2, 4])
        #expect(betaNode.gradient?.shape == [2, 4])
        #expect(betaNode.gradient?.scalars == [Float](repeating: 3, count: 8), "dβ = Σ over the 3 rows of dy = 1")
    }

    // MARK: Numerics

    @Test("rows far from 0 with a tiny spread keep output and gradients accurate",
          arguments: [(1e4, 1.0), (1024, 0.3), (100, 1e-2), (100, 1e-3)])
    func largeMeanRowsKeepOutputAndGradientsAccurate(mean: Double, spread: Double) {
        // LayerNorm rows at `mean` (row 0 ordinary): x − μ must survive Float
        // rounding of terms of size |μ|·invstd, in the forward and in the pullback.
        let shape = [3, 16]
        let z = randomValues(shape, in: -1.7...1.7, seed: 236)
        let x = DoubleTensor((0..<z.count).map { flat in
            Double(Float(flat < 16 ? z.values[flat] : mean + spread * z.values[flat]))
        }, shape: shape)
        let gamma = randomValues([16], in: 0.5...1.5, seed: 237), beta = randomValues([16], seed: 238)
        // Gradients reach γ·invstd ≈ 300 at σ = 1e-3: 1e-4 absolute is a few Float ulps there.
        // h = 1e-5 keeps the Double reference's rounding (x ≈ 1e4) below the tolerance.
        expectGradientsMatchFiniteDifferences(at: [x, gamma, beta], relative: 1e-4, absolute: 1e-4,
                                              forwardRelative: 1e-5, forwardAbsolute: 1e-5, step: 1e-5) { t in
            layerNorm(t[0], normalizedShape: [16], gamma: t[1], beta: t[2], epsilon: Self.epsilon)
        } reference: { d in
            referenceLayerNorm(d[0], normalizedRank: 1, gamma: d[1].values, beta: d[2].values, epsilon: epsilon)
        }
    }

    @Test func constantRowOutputsBetaWithFiniteGradients() {
        // Group 1 of sample 0 is constant: variance exactly 0, output exactly β.
        let shape = [2, 4, 3]
        var values = input(shape, seed: 239).values.map { Float($0) }
        for c in 2..<4 { for i in 0..<3 { values[c * 3 + i] = -2.5 } }
        let beta: [Float] = [0.5, -0.25, 0.75, 1.5]
        let node = GradientNode(leaf: "x")
        let (y, statistics) = groupNorm(Tensor(values, shape: shape).attached(to: node),
                                        layout: .groupNorm(shape: shape, groupCount: 2), gamma: Tensor([1, 2, 3, 4]),
                                        beta: Tensor(beta), epsilon: Self.epsilon)
        #expect(statistics.variance[1] == 0 && statistics.mean[1] == -2.5)
        #expect(Array(y.scalars[6..<12]) == [0.75, 0.75, 0.75, 1.5, 1.5, 1.5])
        y.backward(gradient: Tensor(randomValues(shape, seed: 240).values.map { Float($0) }, shape: shape))
        #expect(node.gradient?.scalars.allSatisfy(\.isFinite) == true)
    }

    @Test func nonFiniteInputShowsInTheStatistics() {
        var values = input([2, 3, 4], seed: 241).values.map { Float($0) }
        values[5] = .nan
        let (_, statistics) = groupNorm(Tensor(values, shape: [2, 3, 4]), layout: .instanceNorm(shape: [2, 3, 4]),
                                        gamma: nil, beta: nil, epsilon: Self.epsilon)
        #expect(!statistics.isFinite)
        #expect(statistics.mean[1].isNaN && statistics.variance[1].isNaN, "row (0, 1) holds the NaN")
        #expect(statistics.mean[0].isFinite && statistics.mean[2].isFinite, "other rows are unaffected")
    }
}
