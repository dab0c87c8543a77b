import NormKitCore
import Testing

/// The batch-norm kernels called directly on buffers viewed as (outer, channels, inner).
@Suite("batch-norm kernels")
struct BatchNormKernelTests {
    /// (outer, channels, inner): inner == 1 and inner > 1 take different loops.
    static let layouts = [(5, 3, 1), (3, 2, 4), (1, 4, 6)]

    /// The channel of each element of an (outer, channels, inner) buffer.
    private func channels(outer: Int, channels: Int, inner: Int) -> [Int] {
        (0..<(outer * channels * inner)).map { ($0 / inner) % channels }
    }

    @Test(arguments: layouts)
    func statisticsAreTheMeanAndBiasedVariancePerChannel(outer: Int, channelCount: Int, inner: Int) {
        let x = randomValues([outer * channelCount * inner], in: -3...3, seed: 150).values
        let channelOf = channels(outer: outer, channels: channelCount, inner: inner)
        let m = Double(outer * inner)
        var expectedMean = [Double](repeating: 0, count: channelCount)
        for (value, c) in zip(x, channelOf) { expectedMean[c] += value / m }
        var expectedVariance = [Double](repeating: 0, count: channelCount)
        for (value, c) in zip(x, channelOf) { expectedVariance[c] += (value - expectedMean[c]) * (value - expectedMean[c]) / m }

        let input = x.map { Float($0) }
        var mean = [Double](repeating: .nan, count: channelCount), variance = [Double](repeating: .nan, count: channelCount)
        input.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                variance.withUnsafeMutableBufferPointer { vp in
                    batchNormStatistics(xp, outer: outer, channels: channelCount, inner: inner, mean: mp, variance: vp)
                }
            }
        }
        // Double accumulation of Float inputs: agreement to Double rounding.
        for c in 0..<channelCount {
            #expect(isClose(mean[c], expectedMean[c], relative: 1e-12, absolute: 1e-14), "mean[\(c)]")
            #expect(isClose(variance[c], expectedVariance[c], relative: 1e-12, absolute: 0), "variance[\(c)]")
        }
    }

    @Test(arguments: layouts)
    func applyIsOneAffineMapPerChannel(outer: Int, channelCount: Int, inner: Int) {
        let x = randomValues([outer * channelCount * inner], seed: 151).values.map { Float($0) }
        let scale = randomValues([channelCount], seed: 152).values.map { Float($0) }
        let shift = randomValues([channelCount], seed: 153).values.map { Float($0) }
        let channelOf = channels(outer: outer, channels: channelCount, inner: inner)
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { xp in
            scale.withUnsafeBufferPointer { sp in
                shift.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        batchNormApply(xp, outer: outer, channels: channelCount, inner: inner, scale: sp, shift: bp, output: yp)
                    }
                }
            }
        }
        let expected = zip(x, channelOf).map { Double($0) * Double(scale[$1]) + Double(shift[$1]) }
        // Two Float roundings (product, sum) of values in [-1, 1]; scale/shift are O(1).
        expectClose(y, expected, relative: 0, absolute: 3e-7)
    }

    @Test(arguments: layouts)
    func applyWithACentreSubtractsItFirst(outer: Int, channelCount: Int, inner: Int) {
        // Values near 1e4: (x − centre)·scale + shift keeps the small deviations exactly.
        let deviations = randomValues([outer * channelCount * inner], in: -0.01...0.01, seed: 156).values
        let x = deviations.map { Float(1e4 + $0) }
        let centre = [Float](repeating: 1e4, count: channelCount)
        let scale = randomValues([channelCount], in: 1...100, seed: 157).values.map { Float($0) }
        let shift = randomValues([channelCount], seed: 158).values.map { Float($0) }
        let channelOf = channels(outer: outer, channels: channelCount, inner: inner)
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { xp in
            scale.withUnsafeBufferPointer { sp in
                shift.withUnsafeBufferPointer { bp in
                    centre.withUnsafeBufferPointer { cp in
                        y.withUnsafeMutableBufferPointer { yp in
                            batchNormApply(xp, outer: outer, channels: channelCount, inner: inner,
                                           scale: sp, shift: bp, center: cp, output: yp)
                        }
                    }
                }
            }
        }
        let expected = (0..<x.count).map { i in
            (Double(x[i]) - 1e4) * Double(scale[channelOf[i]]) + Double(shift[channelOf[i]])
        }
        expectClose(y, expected, relative: 3e-7, absolute: 3e-7)
    }

    /// The pullback from its definition, in Double: with μ = mean + residual and
    /// x̂ = (x − μ)·invstd, dβ = Σdy, dγ = Σdy·x̂, and dx = γ·invstd/m·(m·dy − Σdy − x̂·Σdy·x̂)
    /// for batch statistics or dx = dy·γ·invstd for constant ones.
    func referenceBackward(
        x: [Float], dy: [Float], channelOf: [Int], mean: [Float], residual: [Float], invstd: [Float],
        gamma: [Float]?, statisticsFromBatch: Bool
    ) -> (dx: [Double], dGamma: [Double], dBeta: [Double]) {
        let channelCount = mean.count
        let m = Double(x.count / channelCount)
        let normalized = x.indices.map { i in
            let c = channelOf[i]
            return (Double(x[i]) - (Double(mean[c]) + Double(residual[c]))) * Double(invstd[c])
        }
        var sumDy = [Double](repeating: 0, count: channelCount), sumDyNormalized = sumDy
        for i in x.indices {
            sumDy[channelOf[i]] += Double(dy[i])
            sumDyNormalized[channelOf[i]] += Double(dy[i]) * normalized[i]
        }
        let dx = x.indices.map { i -> Double in
            let c = channelOf[i]
            let g = Double(gamma?[c] ?? 1), s = Double(invstd[c])
            guard statisticsFromBatch else { return Double(dy[i]) * g * s }
            return g * s / m * (m * Double(dy[i]) - sumDy[c] - normalized[i] * sumDyNormalized[c])
        }
        return (dx, sumDyNormalized, sumDy)
    }

    @Test(arguments: layouts, [false, true])
    func backwardMatchesTheDefinitionInDouble(layout: (Int, Int, Int), statisticsFromBatch: Bool) {
        let (outer, channelCount, inner) = layout
        let (dx, dGamma, dBeta, expected) = backwardAndItsReference(
            outer: outer, channels: channelCount, inner: inner, statisticsFromBatch: statisticsFromBatch, firstSeed: 159)
        expectClose(dx, expected.dx, relative: 1e-5, absolute: 1e-6, "dx")
        expectClose(dGamma, expected.dGamma, relative: 1e-5, absolute: 1e-6, "dγ")
        expectClose(dBeta, expected.dBeta, relative: 1e-6, absolute: 1e-6, "dβ")
    }

    @Test(arguments: [false, true])
    func backwardWithoutInputGradientOrGammaWritesTheParameterGradients(statisticsFromBatch: Bool) {
        let (outer, channelCount, inner) = (3, 2, 4)
        let x = randomValues([24], seed: 154).values.map { Float($0) }
        let dy = randomValues([24], seed: 155).values.map { Float($0) }
        let mean: [Float] = [0.1, -0.2], invstd: [Float] = [1.5, 0.75]
        var gammaGradient: [Float] = [.nan, .nan], betaGradient: [Float] = [.nan, .nan]
        x.withUnsafeBufferPointer { xp in
            dy.withUnsafeBufferPointer { gp in
                mean.withUnsafeBufferPointer { mp in
                    invstd.withUnsafeBufferPointer { sp in
                        gammaGradient.withUnsafeMutableBufferPointer { dg in
                            betaGradient.withUnsafeMutableBufferPointer { db in
                                batchNormBackward(
                                    input: xp, outputGradient: gp, outer: outer, channels: channelCount, inner: inner,
                                    mean: mp, inverseStandardDeviation: sp, gamma: nil,
                                    statisticsFromBatch: statisticsFromBatch, inputGradient: nil,
                                    gammaGradient: dg, betaGradient: db)
                            }
                        }
                    }
                }
            }
        }
        let expected = referenceBackward(
            x: x, dy: dy, channelOf: channels(outer: outer, channels: channelCount, inner: inner), mean: mean,
            residual: [0, 0], invstd: invstd, gamma: nil, statisticsFromBatch: statisticsFromBatch)
        expectClose(betaGradient, expected.dBeta, relative: 1e-6, absolute: 1e-6, "dβ")
        expectClose(gammaGradient, expected.dGamma, relative: 1e-6, absolute: 1e-6, "dγ")
    }
}

/// `batchNormBackward` on random (outer, channels, inner) inputs drawn from seeds
/// `firstSeed`…`firstSeed + 5`, next to `referenceBackward` on the same inputs.
func backwardAndItsReference(outer: Int, channels: Int, inner: Int, statisticsFromBatch: Bool, threads: Int? = nil,
                             firstSeed: UInt64)
    -> (dx: [Float], dGamma: [Float], dBeta: [Float], expected: (dx: [Double], dGamma: [Double], dBeta: [Double])) {
    let count = outer * channels * inner
    let x = randomValues([count], in: -2...2, seed: firstSeed).values.map { Float($0) }
    let dy = randomValues([count], seed: firstSeed + 1).values.map { Float($0) }
    let mean = randomValues([channels], in: -0.5...0.5, seed: firstSeed + 2).values.map { Float($0) }
    let residual = randomValues([channels], in: -1e-3...1e-3, seed: firstSeed + 3).values.map { Float($0) }
    let invstd = randomValues([channels], in: 0.5...2, seed: firstSeed + 4).values.map { Float($0) }
    let gamma = randomValues([channels], in: 0.5...2, seed: firstSeed + 5).values.map { Float($0) }
    var dx = [Float](repeating: .nan, count: count)
    var dGamma = [Float](repeating: .nan, count: channels), dBeta = dGamma
    x.withUnsafeBufferPointer { xp in
        dy.withUnsafeBufferPointer { gp in
            mean.withUnsafeBufferPointer { mp in
                invstd.withUnsafeBufferPointer { sp in
                    gamma.withUnsafeBufferPointer { gammaPointer in
                        residual.withUnsafeBufferPointer { rp in
                            dx.withUnsafeMutableBufferPointer { dxp in
                                dGamma.withUnsafeMutableBufferPointer { dgp in
                                    dBeta.withUnsafeMutableBufferPointer { dbp in
                                        batchNormBackward(
                                            input: xp, outputGradient: gp, outer: outer, channels: channels,
                                            inner: inner, mean: mp, inverseStandardDeviation: sp, gamma: gammaPointer,
                                            statisticsFromBatch: statisticsFromBatch, meanResidual: rp,
                                            inputGradient: dxp, gammaGradient: dgp, betaGradient: dbp, threads: threads)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let expected = BatchNormKernelTests().referenceBackward(
        x: x, dy: dy, channelOf: x.indices.map { ($0 / inner) % channels }, mean: mean,
        residual: residual, invstd: invstd, gamma: gamma, statisticsFromBatch: statisticsFromBatch)
    return (dx, dGamma, dBeta, (expected.dx, expected.dGamma, expected.dBeta))
}
