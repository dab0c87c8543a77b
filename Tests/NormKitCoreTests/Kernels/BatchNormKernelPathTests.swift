import NormKitCore
import Testing

/// The batch-norm kernels' vector and threaded paths: SIMD16 loops with ragged
/// tails (inner or channels not a multiple of 16), channels-first per-channel
/// tasks and channels-last row chunks with partial sums, split across 1 or 3
/// chunks (`threads:`) or as the kernels choose (nil), each against a Double
/// reference. `BatchNormKernelTests` covers the definitions on tiny shapes.
///
/// Channels-last rows are cut into runs of 64, 16 and 1 channels and taken in
/// blocks of 4 rows: 83 = 64 + 16 + 3 channels and 9 or 53 rows (not multiples
/// of 4, so every chunk ends with a short block) reach every combination.
@Suite("batch-norm kernel paths")
struct BatchNormKernelPathTests {
    /// (outer, channels, inner): channels-first with inner 37 = 2·16 + 5 and 16,
    /// 70 channels (more than one 64-channel block per thread), and outer 1
    /// (threads split the channels' lines, as for group norm's rows);
    /// channels-last (inner 1) with 19 = 16 + 3, 83 = 64 + 16 + 3 and
    /// 128 = 2·64 channels, and 16, 32 and 64 (a row that is a single run,
    /// whose sums stay in registers over a thread's whole range).
    static let layouts = [(7, 5, 37), (3, 4, 16), (2, 70, 17), (1, 9, 40), (53, 19, 1), (40, 32, 1), (9, 83, 1),
                          (10, 128, 1), (23, 64, 1), (31, 16, 1)]
    static let splits: [Int?] = [nil, 1, 3]

    private func channelOf(_ i: Int, channels: Int, inner: Int) -> Int { (i / inner) % channels }

    /// Mean and biased variance per channel in Double, two-pass.
    private func referenceStatistics(_ x: [Float], channels: Int, inner: Int) -> (mean: [Double], variance: [Double]) {
        let m = Double(x.count / channels)
        var mean = [Double](repeating: 0, count: channels), variance = mean
        for i in x.indices { mean[channelOf(i, channels: channels, inner: inner)] += Double(x[i]) / m }
        for i in x.indices {
            let c = channelOf(i, channels: channels, inner: inner)
            variance[c] += (Double(x[i]) - mean[c]) * (Double(x[i]) - mean[c]) / m
        }
        return (mean, variance)
    }

    private func statistics(_ x: [Float], outer: Int, channels: Int, inner: Int, threads: Int?) -> ([Double], [Double]) {
        var mean = [Double](repeating: .nan, count: channels), variance = mean
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                variance.withUnsafeMutableBufferPointer { vp in
                    batchNormStatistics(xp, outer: outer, channels: channels, inner: inner, mean: mp, variance: vp,
                                        threads: threads)
                }
            }
        }
        return (mean, variance)
    }

    @Test(arguments: layouts, splits)
    func trainingForwardWritesTheStatisticsAndTheFoldedOutput(layout: (Int, Int, Int), threads: Int?) {
        let (outer, channels, inner) = layout
        let x = randomValues([outer * channels * inner], in: -3...5, seed: 170).values.map { Float($0) }
        let gamma = randomValues([channels], in: 0.5...2, seed: 171).values
        let beta = randomValues([channels], seed: 172).values
        let expected = referenceStatistics(x, channels: channels, inner: inner)
        var mean = [Double](repeating: .nan, count: channels), variance = mean
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { xp in
            mean.withUnsafeMutableBufferPointer { mp in
                variance.withUnsafeMutableBufferPointer { vp in
                    y.withUnsafeMutableBufferPointer { yp in
                        batchNormTrainingForward(xp, outer: outer, channels: channels, inner: inner, mean: mp,
                                                 variance: vp, output: yp, threads: threads) { c, mu, sigma2 in
                            let a = gamma[c] / (sigma2 + 1e-5).squareRoot()
                            return BatchNormChannelConstants(center: Float(mu), scale: Float(a),
                                                             shift: Float(beta[c] - (mu - Double(Float(mu))) * a))
                        }
                    }
                }
            }
        }
        for c in 0..<channels {
            #expect(isClose(mean[c], expected.mean[c], relative: 1e-12, absolute: 1e-14), "mean[\(c)]")
            #expect(isClose(variance[c], expected.variance[c], relative: 1e-12, absolute: 0), "variance[\(c)]")
        }
        let reference = x.indices.map { i in
            let c = channelOf(i, channels: channels, inner: inner)
            return (Double(x[i]) - expected.mean[c]) * gamma[c] / (expected.variance[c] + 1e-5).squareRoot() + beta[c]
        }
        // |x̂| ≤ ~3 and |γ| ≤ 2: a few Float roundings of values up to ~8.
        expectClose(y, reference, relative: 1e-6, absolute: 2e-6, "y")
    }

    /// Mean 1e4, std 1e-3, and the channel's first value 1 (far out): the one-pass
    /// shifted sums around it would cancel, so the kernel must re-centre on the mean.
    /// Channels-last with 18 channels (row blocks) and 64 (one run, sums in registers).
    @Test(arguments: [(9, 3, 40), (200, 18, 1), (90, 64, 1)], splits)
    func statisticsStayExactWhenTheFirstValueIsFarFromTheMean(layout: (Int, Int, Int), threads: Int?) {
        let (outer, channels, inner) = layout
        let z = randomValues([outer * channels * inner], seed: 173).values
        var x = z.map { Float(1e4 + 1e-3 * $0) }
        for c in 0..<channels { x[c * inner] = 1 }   // element 0 of every channel (outer index 0)
        let expected = referenceStatistics(x, channels: channels, inner: inner)
        let (mean, variance) = statistics(x, outer: outer, channels: channels, inner: inner, threads: threads)
        for c in 0..<channels {
            #expect(isClose(mean[c], expected.mean[c], relative: 1e-13, absolute: 0), "mean[\(c)]")
            #expect(isClose(variance[c], expected.variance[c], relative: 1e-9, absolute: 0), "variance[\(c)]")
        }
    }

    /// The channels-first statistics read a chunk's lines as two streams (its
    /// halves, one line of each at a time, an odd line last) and mask the lanes
    /// of a last vector that overlaps floats already counted. Inner 196 = 12·16 + 4
    /// (a 14×14 map), 31 = 16 + 15, 17 = 16 + 1, 16 (no tail) and 15 (scalar
    /// lines); 15, 9 and 7 lines split into 1, 2 or 3 chunks give odd and even
    /// halves. Channel c is centred on 100·c, so a line summed with another
    /// channel's shift or into another channel's sums shows; the first value of
    /// channel 1 is far out, so the re-centred second sweep runs too.
    @Test(arguments: [(5, 3, 196), (3, 5, 31), (3, 3, 17), (4, 3, 16), (7, 1, 15), (1, 7, 40)], [1, 2, 3, nil] as [Int?])
    func channelsFirstStatisticsOfTwoStreamsMatchTheReference(layout: (Int, Int, Int), threads: Int?) {
        let (outer, channels, inner) = layout
        let z = randomValues([outer * channels * inner], in: -2...3, seed: 179).values
        var x = z.indices.map { i in Float(100 * Double(channelOf(i, channels: channels, inner: inner)) + z[i]) }
        if channels > 1 { x[inner] = 1e4 }   // channel 1's first value, which is its first shift
        let expected = referenceStatistics(x, channels: channels, inner: inner)
        let (mean, variance) = statistics(x, outer: outer, channels: channels, inner: inner, threads: threads)
        for c in 0..<channels {
            #expect(isClose(mean[c], expected.mean[c], relative: 1e-13, absolute: 0), "mean[\(c)]")
            #expect(isClose(variance[c], expected.variance[c], relative: 1e-11, absolute: 0), "variance[\(c)]")
        }
    }

    @Test(arguments: layouts, splits)
    func applyMatchesTheAffineMapOnEveryPath(layout: (Int, Int, Int), threads: Int?) {
        let (outer, channels, inner) = layout
        let x = randomValues([outer * channels * inner], seed: 174).values.map { Float($0) }
        let center = randomValues([channels], seed: 175).values.map { Float($0) }
        let scale = randomValues([channels], in: 0.5...2, seed: 176).values.map { Float($0) }
        let shift = randomValues([channels], seed: 177).values.map { Float($0) }
        var y = [Float](repeating: .nan, count: x.count)
        var uncentred = y
        x.withUnsafeBufferPointer { xp in
            scale.withUnsafeBufferPointer { sp in
                shift.withUnsafeBufferPointer { bp in
                    center.withUnsafeBufferPointer { cp in
                        y.withUnsafeMutableBufferPointer { yp in
                            batchNormApply(xp, outer: outer, channels: channels, inner: inner, scale: sp, shift: bp,
                                           center: cp, output: yp, threads: threads)
                        }
                        uncentred.withUnsafeMutableBufferPointer { yp in
                            batchNormApply(xp, outer: outer, channels: channels, inner: inner, scale: sp, shift: bp,
                                           output: yp, threads: threads)
                        }
                    }
                }
            }
        }
        let c = x.indices.map { channelOf($0, channels: channels, inner: inner) }
        expectClose(y, x.indices.map { (Double(x[$0]) - Double(center[c[$0]])) * Double(scale[c[$0]]) + Double(shift[c[$0]]) },
                    relative: 0, absolute: 1e-6, "centred")
        expectClose(uncentred, x.indices.map { Double(x[$0]) * Double(scale[c[$0]]) + Double(shift[c[$0]]) },
                    relative: 0, absolute: 1e-6, "uncentred")
    }

    @Test(arguments: layouts, splits)
    func backwardMatchesTheDefinitionOnEveryPath(layout: (Int, Int, Int), threads: Int?) {
        expectBackwardMatchesTheDefinition(layout: layout, threads: threads, firstSeed: 178)
    }

    /// dx, dγ and dβ of the kernel (statistics from the batch) against the Double definition.
    private func expectBackwardMatchesTheDefinition(layout: (Int, Int, Int), threads: Int?, firstSeed: UInt64) {
        let (outer, channels, inner) = layout
        let (dx, dGamma, dBeta, expected) = backwardAndItsReference(
            outer: outer, channels: channels, inner: inner, statisticsFromBatch: true, threads: threads,
            firstSeed: firstSeed)
        expectClose(dx, expected.dx, relative: 1e-5, absolute: 1e-5, "dx")
        expectClose(dGamma, expected.dGamma, relative: 1e-5, absolute: 1e-5, "dγ")
        expectClose(dBeta, expected.dBeta, relative: 1e-6, absolute: 1e-6, "dβ")
    }

    /// dx written over dy (the autodiff pullback's in-place case) equals dx in a
    /// buffer of its own, bit for bit, on every path and chunk count.
    @Test(arguments: layouts, [1, 2, 3])
    func backwardWritesTheSameDxOverDy(layout: (Int, Int, Int), threads: Int) {
        let (outer, channels, inner) = layout
        let count = outer * channels * inner
        let x = randomValues([count], in: -2...2, seed: 996).values.map { Float($0) }
        let dy = randomValues([count], seed: 997).values.map { Float($0) }
        let mean = randomValues([channels], in: -0.5...0.5, seed: 998).values.map { Float($0) }
        let invstd = randomValues([channels], in: 0.5...2, seed: 999).values.map { Float($0) }
        let gamma = randomValues([channels], in: 0.5...2, seed: 1000).values.map { Float($0) }
        func run(inPlace: Bool) -> [Float] {
            var separate = [Float](repeating: .nan, count: count), shared = dy
            var dGamma = [Float](repeating: 0, count: channels), dBeta = dGamma
            x.withUnsafeBufferPointer { px in
                mean.withUnsafeBufferPointer { pm in
                    invstd.withUnsafeBufferPointer { ps in
                        gamma.withUnsafeBufferPointer { pg in
                            dGamma.withUnsafeMutableBufferPointer { dg in
                                dBeta.withUnsafeMutableBufferPointer { db in
                                    shared.withUnsafeMutableBufferPointer { pdy in
                                        separate.withUnsafeMutableBufferPointer { pdx in
                                            batchNormBackward(
                                                input: px, outputGradient: UnsafeBufferPointer(pdy),
                                                outer: outer, channels: channels, inner: inner, mean: pm,
                                                inverseStandardDeviation: ps, gamma: pg, statisticsFromBatch: true,
                                                inputGradient: inPlace ? pdy : pdx, gammaGradient: dg,
                                                betaGradient: db, threads: threads)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return inPlace ? shared : separate
        }
        #expect(run(inPlace: true) == run(inPlace: false))
    }

    /// Channels-last chunks that start mid-tensor with several row blocks per
    /// part and a ragged rest: 30 rows in 1, 2 or 3 chunks (the sums' quarters
    /// of 7, 3 or 2 rows, then 2, 3 or 2 rows; the dx pass's halves of 15, 7
    /// or 5 rows, then 0, 1 or 0 rows). 83 = 2·32 + 16 + 3 channels reach every
    /// run width of the sums (32, 16, 1) and of dx (64, 16, 1); 130 = 2·64 + 2
    /// and 4·32 + 2 likewise.
    @Test(arguments: [(30, 83, 1), (30, 130, 1)], [1, 2, 3])
    func channelsLastBackwardMatchesTheDefinitionForEveryChunkCount(layout: (Int, Int, Int), threads: Int) {
        expectBackwardMatchesTheDefinition(layout: layout, threads: threads, firstSeed: 994)
    }

    /// 64 Ki floats: above the size at which the kernel splits by itself (into
    /// `Threading.count` chunks of lines, each with its own partial sums), with
    /// a batch and with outer 1 (group norm's view).
    @Test(arguments: [(4, 16, 1024), (1, 64, 1024)])
    func largeInputsSplitByTheKernelMatchTheReference(layout: (Int, Int, Int)) {
        let (outer, channels, inner) = layout
        let x = randomValues([outer * channels * inner], seed: 184).values.map { Float($0) }
        let expected = referenceStatistics(x, channels: channels, inner: inner)
        let (mean, variance) = statistics(x, outer: outer, channels: channels, inner: inner, threads: nil)
        for c in 0..<channels {
            #expect(isClose(mean[c], expected.mean[c], relative: 1e-12, absolute: 1e-14), "mean[\(c)]")
            #expect(isClose(variance[c], expected.variance[c], relative: 1e-12, absolute: 0), "variance[\(c)]")
        }
    }

    /// Elementwise passes give the same bits however the rows are split: a
    /// value's arithmetic does not depend on which chunk or row block it is in.
    @Test(arguments: [(53, 83, 1), (5, 7, 37)])
    func applyIsIdenticalForEveryThreadCount(layout: (Int, Int, Int)) {
        let (outer, channels, inner) = layout
        let x = randomValues([outer * channels * inner], seed: 185).values.map { Float($0) }
        let center = randomValues([channels], seed: 186).values.map { Float($0) }
        let scale = randomValues([channels], in: 0.5...2, seed: 187).values.map { Float($0) }
        let shift = randomValues([channels], seed: 188).values.map { Float($0) }
        let outputs = [1, 2, 3].map { threads in
            var y = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { xp in
                scale.withUnsafeBufferPointer { sp in
                    shift.withUnsafeBufferPointer { bp in
                        center.withUnsafeBufferPointer { cp in
                            y.withUnsafeMutableBufferPointer { yp in
                                batchNormApply(xp, outer: outer, channels: channels, inner: inner, scale: sp, shift: bp,
                                               center: cp, output: yp, threads: threads)
                            }
                        }
                    }
                }
            }
            return y
        }
        #expect(outputs[1] == outputs[0])
        #expect(outputs[2] == outputs[0])
    }

    /// Split sums differ only in the order Doubles are added: the statistics of
    /// 1, 2 and 3 chunks agree to a few Double roundings.
    @Test(arguments: [(53, 83, 1), (5, 7, 37)])
    func statisticsAgreeForEveryThreadCount(layout: (Int, Int, Int)) {
        let (outer, channels, inner) = layout
        let x = randomValues([outer * channels * inner], in: -3...5, seed: 189).values.map { Float($0) }
        let (mean, variance) = statistics(x, outer: outer, channels: channels, inner: inner, threads: 1)
        for threads in [2, 3] {
            let (splitMean, splitVariance) = statistics(x, outer: outer, channels: channels, inner: inner,
                                                        threads: threads)
            for c in 0..<channels {
                #expect(isClose(splitMean[c], mean[c], relative: 1e-14, absolute: 1e-15), "mean[\(c)], \(threads) chunks")
                #expect(isClose(splitVariance[c], variance[c], relative: 1e-14, absolute: 0),
                        "variance[\(c)], \(threads) chunks")
            }
        }
    }
}
