import NormKitCore
import Testing

/// The group-norm kernels called directly on buffers viewed as (batch, groups, channelsPerGroup, inner).
@Suite("group-norm kernels")
struct GroupNormKernelTests {
    /// LayerNorm-shaped (inner 1), GroupNorm-shaped, InstanceNorm-shaped (one channel per group).
    static let layouts = [
        GroupNormLayout(batch: 3, groups: 1, channelsPerGroup: 7, inner: 1),
        GroupNormLayout(batch: 2, groups: 3, channelsPerGroup: 2, inner: 4),
        GroupNormLayout(batch: 2, groups: 4, channelsPerGroup: 1, inner: 5),
    ]

    /// The row and the channel of every element, from the layout's definition
    /// (index = ((n·G + g)·Cg + j)·inner + i; row = n·G + g; channel = g·Cg + j).
    private func rowsAndChannels(_ layout: GroupNormLayout) -> (row: [Int], channel: [Int]) {
        var rows: [Int] = [], channels: [Int] = []
        for n in 0..<layout.batch {
            for g in 0..<layout.groups {
                for j in 0..<layout.channelsPerGroup {
                    for _ in 0..<layout.inner {
                        rows.append(n * layout.groups + g)
                        channels.append(g * layout.channelsPerGroup + j)
                    }
                }
            }
        }
        return (rows, channels)
    }

    private func referenceStatistics(_ x: [Double], _ layout: GroupNormLayout) -> (mean: [Double], variance: [Double]) {
        let rowOf = rowsAndChannels(layout).row
        let m = Double(layout.rowLength)
        var mean = [Double](repeating: 0, count: layout.rows), variance = mean
        for (value, r) in zip(x, rowOf) { mean[r] += value / m }
        for (value, r) in zip(x, rowOf) { variance[r] += (value - mean[r]) * (value - mean[r]) / m }
        return (mean, variance)
    }

    private func statistics(_ x: [Float], _ layout: GroupNormLayout) -> (mean: [Double], variance: [Double]) {
        var mean = [Double](repeating: .nan, count: layout.rows), variance = mean
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                variance.withUnsafeMutableBufferPointer { vp in
                    groupNormStatistics(xp, layout: layout, mean: mp, variance: vp)
                }
            }
        }
        return (mean, variance)
    }

    @Test("layouts of LayerNorm, GroupNorm and InstanceNorm inputs")
    func layoutsOfTheThreeOps() {
        #expect(GroupNormLayout.layerNorm(shape: [2, 3, 4, 5], normalizedShape: [4, 5])
                == GroupNormLayout(batch: 6, groups: 1, channelsPerGroup: 20, inner: 1))
        #expect(GroupNormLayout.layerNorm(shape: [4, 5], normalizedShape: [4, 5])
                == GroupNormLayout(batch: 1, groups: 1, channelsPerGroup: 20, inner: 1))
        #expect(GroupNormLayout.groupNorm(shape: [2, 6, 3, 4], groupCount: 3)
                == GroupNormLayout(batch: 2, groups: 3, channelsPerGroup: 2, inner: 12))
        #expect(GroupNormLayout.groupNorm(shape: [5, 4], groupCount: 2)
                == GroupNormLayout(batch: 5, groups: 2, channelsPerGroup: 2, inner: 1))
        #expect(GroupNormLayout.instanceNorm(shape: [2, 3, 4, 5, 6])
                == GroupNormLayout(batch: 2, groups: 3, channelsPerGroup: 1, inner: 120))
    }

    @Test(arguments: layouts)
    func statisticsAreTheMeanAndBiasedVariancePerRow(layout: GroupNormLayout) {
        let x = randomValues([layout.count], in: -3...3, seed: 170).values
        let expected = referenceStatistics(x, layout)
        let actual = statistics(x.map { Float($0) }, layout)
        // Double accumulation of Float inputs: agreement to Double rounding.
        for r in 0..<layout.rows {
            #expect(isClose(actual.mean[r], expected.mean[r], relative: 1e-12, absolute: 1e-14), "mean[\(r)]")
            #expect(isClose(actual.variance[r], expected.variance[r], relative: 1e-12, absolute: 0), "variance[\(r)]")
        }
    }

    @Test("rows at mean 1e4 with std 1e-3 keep their variance (two passes in Double)",
          arguments: [GroupNormLayout(batch: 2, groups: 1, channelsPerGroup: 256, inner: 1),
                      GroupNormLayout(batch: 2, groups: 2, channelsPerGroup: 2, inner: 64)])
    func largeMeanTinySpreadStatistics(layout: GroupNormLayout) {
        // Float spacing at 1e4 is 9.8e-4, so the values take a few levels ~1e-3 apart;
        // the reference sees the same Float values, and the one-pass E[x²] − E[x]²
        // would lose all of the ~1e-6 variance in the 1e8-sized terms.
        let z = randomValues([layout.count], in: -1.7...1.7, seed: 171).values
        let x = z.map { Float(1e4 + 1e-3 * $0) }
        let expected = referenceStatistics(x.map { Double($0) }, layout)
        let actual = statistics(x, layout)
        #expect(expected.variance.allSatisfy { $0 > 1e-7 && $0 < 1e-5 }, "the test data has the intended spread")
        for r in 0..<layout.rows {
            #expect(isClose(actual.variance[r], expected.variance[r], relative: 1e-9, absolute: 0),
                    "variance[\(r)] \(actual.variance[r]) vs \(expected.variance[r])")
            #expect(isClose(actual.mean[r], expected.mean[r], relative: 1e-15, absolute: 0), "mean[\(r)]")
        }
    }

    @Test(arguments: layouts)
    func constantRowsHaveZeroVarianceAndApplyToBeta(layout: GroupNormLayout) {
        // Every row constant (a different constant per row): variance exactly 0,
        // mean exactly the constant, and y = γ·0·(1/√ε) + β = β exactly.
        let rowOf = rowsAndChannels(layout).row
        let constants = randomValues([layout.rows], in: -100...100, seed: 172).values.map { Float($0) }
        let x = rowOf.map { constants[$0] }
        let (mean, variance) = statistics(x, layout)
        #expect(variance.allSatisfy { $0 == 0 }, "\(variance)")
        #expect(mean == constants.map { Double($0) })

        let invstd = [Float](repeating: Float(1 / (1e-5 as Double).squareRoot()), count: layout.rows)
        let gamma = randomValues([layout.channels], in: 0.5...2, seed: 173).values.map { Float($0) }
        let beta = randomValues([layout.channels], seed: 174).values.map { Float($0) }
        let y = apply(x, layout, mean: constants, invstd: invstd, residual: nil, gamma: gamma, beta: beta)
        #expect(y == rowsAndChannels(layout).channel.map { beta[$0] })
    }

    private func apply(_ x: [Float], _ layout: GroupNormLayout, mean: [Float], invstd: [Float], residual: [Float]?,
                       gamma: [Float]?, beta: [Float]?) -> [Float] {
        var y = [Float](repeating: .nan, count: x.count)
        let (noGamma, noBeta, noResidual) = (gamma == nil, beta == nil, residual == nil)
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeBufferPointer { mp in
                invstd.withUnsafeBufferPointer { sp in
                    (residual ?? []).withUnsafeBufferPointer { rp in
                        (gamma ?? []).withUnsafeBufferPointer { gp in
                            (beta ?? []).withUnsafeBufferPointer { bp in
                                y.withUnsafeMutableBufferPointer { yp in
                                    groupNormApply(xp, layout: layout, mean: mp, inverseStandardDeviation: sp,
                                                   meanResidual: noResidual ? nil : rp, gamma: noGamma ? nil : gp,
                                                   beta: noBeta ? nil : bp, output: yp)
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    @Test(arguments: layouts, [false, true])
    func applyNormalizesPerRowAndScalesPerChannel(layout: GroupNormLayout, affine: Bool) {
        let x = randomValues([layout.count], in: -2...2, seed: 175).values.map { Float($0) }
        let mean = randomValues([layout.rows], in: -0.5...0.5, seed: 176).values.map { Float($0) }
        let residual = randomValues([layout.rows], in: -1e-3...1e-3, seed: 177).values.map { Float($0) }
        let invstd = randomValues([layout.rows], in: 0.5...2, seed: 178).values.map { Float($0) }
        let gamma = affine ? randomValues([layout.channels], in: -2...2, seed: 179).values.map { Float($0) } : nil
        let beta = affine ? randomValues([layout.channels], seed: 180).values.map { Float($0) } : nil
        let (rowOf, channelOf) = rowsAndChannels(layout)
        let y = apply(x, layout, mean: mean, invstd: invstd, residual: residual, gamma: gamma, beta: beta)
        let expected = x.indices.map { i -> Double in
            let r = rowOf[i], c = channelOf[i]
            let normalized = (Double(x[i]) - (Double(mean[r]) + Double(residual[r]))) * Double(invstd[r])
            return Double(gamma?[c] ?? 1) * normalized + Double(beta?[c] ?? 0)
        }
        // A few Float roundings of O(1..10) terms.
        expectClose(y, expected, relative: 1e-6, absolute: 2e-6)
    }

    @Test func applyCentresOnTheFloatMeanFirst() {
        // Values near 1e4 with deviations ≤ 1e-2 and invstd up to 100: (x − mean)·a + b
        // keeps them; x·a + (β − μ·a) would cancel terms of size 1e6 in Float.
        let layout = GroupNormLayout(batch: 2, groups: 2, channelsPerGroup: 2, inner: 3)
        let x = randomValues([layout.count], in: -0.01...0.01, seed: 181).values.map { Float(1e4 + $0) }
        let mean = [Float](repeating: 1e4, count: layout.rows)
        let invstd = randomValues([layout.rows], in: 1...100, seed: 182).values.map { Float($0) }
        let beta = randomValues([layout.channels], seed: 183).values.map { Float($0) }
        let (rowOf, channelOf) = rowsAndChannels(layout)
        let y = apply(x, layout, mean: mean, invstd: invstd, residual: nil, gamma: nil, beta: beta)
        let expected = x.indices.map { (Double(x[$0]) - 1e4) * Double(invstd[rowOf[$0]]) + Double(beta[channelOf[$0]]) }
        expectClose(y, expected, relative: 3e-7, absolute: 3e-7)
    }

    /// The pullback from its definition, in Double: with μ = mean + residual,
    /// x̂ = (x − μ)·invstd and g = dy·γ, per row of M values
    /// dx = invstd·(g − Σg/M − x̂·Σ(g·x̂)/M) (row statistics) or dy·γ·invstd (constants);
    /// per channel dγ = Σ dy·x̂, dβ = Σ dy over all rows.
    private func referenceBackward(
        _ layout: GroupNormLayout, x: [Float], dy: [Float], mean: [Float], residual: [Float], invstd: [Float],
        gamma: [Float]?, statisticsFromInput: Bool
    ) -> (dx: [Double], dGamma: [Double], dBeta: [Double]) {
        let (rowOf, channelOf) = rowsAndChannels(layout)
        let m = Double(layout.rowLength)
        let normalized = x.indices.map { i in
            (Double(x[i]) - (Double(mean[rowOf[i]]) + Double(residual[rowOf[i]]))) * Double(invstd[rowOf[i]])
        }
        let g = x.indices.map { Double(dy[$0]) * Double(gamma?[channelOf[$0]] ?? 1) }
        var sumG = [Double](repeating: 0, count: layout.rows), sumGNormalized = sumG
        var dGamma = [Double](repeating: 0, count: layout.channels), dBeta = dGamma
        for i in x.indices {
            sumG[rowOf[i]] += g[i]
            sumGNormalized[rowOf[i]] += g[i] * normalized[i]
            dGamma[channelOf[i]] += Double(dy[i]) * normalized[i]
            dBeta[channelOf[i]] += Double(dy[i])
        }
        let dx = x.indices.map { i -> Double in
            let r = rowOf[i], s = Double(invstd[r])
            guard statisticsFromInput else { return g[i] * s }
            return s * (g[i] - sumG[r] / m - normalized[i] * sumGNormalized[r] / m)
        }
        return (dx, dGamma, dBeta)
    }

    @Test(arguments: layouts, [false, true])
    func backwardMatchesTheDefinitionInDouble(layout: GroupNormLayout, statisticsFromInput: Bool) {
        let x = randomValues([layout.count], in: -2...2, seed: 184).values.map { Float($0) }
        let dy = randomValues([layout.count], seed: 185).values.map { Float($0) }
        let mean = randomValues([layout.rows], in: -0.5...0.5, seed: 186).values.map { Float($0) }
        let residual = randomValues([layout.rows], in: -1e-3...1e-3, seed: 187).values.map { Float($0) }
        let invstd = randomValues([layout.rows], in: 0.5...2, seed: 188).values.map { Float($0) }
        let gamma = randomValues([layout.channels], in: -2...2, seed: 189).values.map { Float($0) }
        var dx = [Float](repeating: .nan, count: layout.count)
        var dGamma = [Float](repeating: .nan, count: layout.channels), dBeta = dGamma
        x.withUnsafeBufferPointer { xp in
            dy.withUnsafeBufferPointer { gp in
                mean.withUnsafeBufferPointer { mp in
                    invstd.withUnsafeBufferPointer { sp in
                        residual.withUnsafeBufferPointer { rp in
                            gamma.withUnsafeBufferPointer { gammaPointer in
                                dx.withUnsafeMutableBufferPointer { dxp in
                                    dGamma.withUnsafeMutableBufferPointer { dgp in
                                        dBeta.withUnsafeMutableBufferPointer { dbp in
                                            groupNormBackward(
                                                input: xp, outputGradient: gp, layout: layout, mean: mp,
                                                inverseStandardDeviation: sp, meanResidual: rp, gamma: gammaPointer,
                                                statisticsFromInput: statisticsFromInput, inputGradient: dxp,
                                                gammaGradient: dgp, betaGradient: dbp)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let expected = referenceBackward(layout, x: x, dy: dy, mean: mean, residual: residual, invstd: invstd,
                                         gamma: gamma, statisticsFromInput: statisticsFromInput)
        expectClose(dx, expected.dx, relative: 1e-5, absolute: 1e-6, "dx")
        expectClose(dGamma, expected.dGamma, relative: 1e-5, absolute: 1e-6, "dγ")
        expectClose(dBeta, expected.dBeta, relative: 1e-6, absolute: 1e-6, "dβ")
    }

    @Test(arguments: [false, true])
    func backwardWithoutInputGradientOrGammaWritesTheParameterGradients(statisticsFromInput: Bool) {
        let layout = Self.layouts[1]
        let x = randomValues([layout.count], seed: 190).values.map { Float($0) }
        let dy = randomValues([layout.count], seed: 191).values.map { Float($0) }
        let mean = randomValues([layout.rows], in: -0.5...0.5, seed: 192).values.map { Float($0) }
        let invstd = randomValues([layout.rows], in: 0.5...2, seed: 193).values.map { Float($0) }
        var dGamma = [Float](repeating: .nan, count: layout.channels), dBeta = dGamma
        x.withUnsafeBufferPointer { xp in
            dy.withUnsafeBufferPointer { gp in
                mean.withUnsafeBufferPointer { mp in
                    invstd.withUnsafeBufferPointer { sp in
                        dGamma.withUnsafeMutableBufferPointer { dgp in
                            dBeta.withUnsafeMutableBufferPointer { dbp in
                                groupNormBackward(
                                    input: xp, outputGradient: gp, layout: layout, mean: mp,
                                    inverseStandardDeviation: sp, gamma: nil, statisticsFromInput: statisticsFromInput,
                                    inputGradient: nil, gammaGradient: dgp, betaGradient: dbp)
                            }
                        }
                    }
                }
            }
        }
        let expected = referenceBackward(layout, x: x, dy: dy, mean: mean,
                                         residual: [Float](repeating: 0, count: layout.rows), invstd: invstd,
                                         gamma: nil, statisticsFromInput: statisticsFromInput)
        expectClose(dGamma, expected.dGamma, relative: 1e-6, absolute: 1e-6, "dγ")
        expectClose(dBeta, expected.dBeta, relative: 1e-6, absolute: 1e-6, "dβ")
    }
}
