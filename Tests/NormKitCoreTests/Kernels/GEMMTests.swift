#if canImport(Glibc)
import Glibc
#endif
import NormKitCore
import Testing

/// One `sgemm` call: C = alpha · op(A) · op(B) + beta · C with op(A) (m, k),
/// op(B) (k, n), every matrix stored row-major with `padding` extra columns
/// beyond its width (so lda, ldb, ldc exceed the widths when padding > 0).
struct GEMMCase: Sendable, CustomTestStringConvertible {
    var m: Int, n: Int, k: Int
    var transposeA = false, transposeB = false
    var alpha: Float = 1, beta: Float = 0
    var padding = 0
    /// `.openBLAS` falls back to `.native` where the system library is absent.
    var implementation = SGEMMImplementation.native

    var testDescription: String {
        "\(m)×\(n)×\(k) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N") α=\(alpha) β=\(beta) pad=\(padding) \(implementation)"
    }

    /// This case on every implementation.
    var onEveryImplementation: [GEMMCase] {
        [SGEMMImplementation.native, .openBLAS].map { var copy = self; copy.implementation = $0; return copy }
    }

    // Stored shapes: A is (m, k) or, transposed, (k, m); B is (k, n) or (n, k).
    var aRows: Int { transposeA ? k : m }
    var aWidth: Int { transposeA ? m : k }
    var bRows: Int { transposeB ? n : k }
    var bWidth: Int { transposeB ? k : n }
    var lda: Int { aWidth + padding }
    var ldb: Int { bWidth + padding }
    var ldc: Int { n + padding }

    func opA(_ a: [Float], _ i: Int, _ p: Int) -> Double { Double(transposeA ? a[p * lda + i] : a[i * lda + p]) }
    func opB(_ b: [Float], _ p: Int, _ j: Int) -> Double { Double(transposeB ? b[j * ldb + p] : b[p * ldb + j]) }

    /// Random operands. Padding slots of A and B hold NaN, so reading one poisons
    /// the result; those of C hold −0, which even an added +0 would turn into +0.
    func operands(seed: UInt64) -> (a: [Float], b: [Float], c: [Float]) {
        func matrix(rows: Int, width: Int, stride: Int, seed: UInt64, padding: Float = .nan) -> [Float] {
            let values = randomValues([rows, width], seed: seed).values
            var stored = [Float](repeating: padding, count: max(rows * stride, 1))
            for r in 0..<rows { for c in 0..<width { stored[r * stride + c] = Float(values[r * width + c]) } }
            return stored
        }
        return (matrix(rows: aRows, width: aWidth, stride: lda, seed: seed),
                matrix(rows: bRows, width: bWidth, stride: ldb, seed: seed + 1),
                matrix(rows: m, width: n, stride: ldc, seed: seed + 2, padding: -0.0))
    }

    func run(_ a: [Float], _ b: [Float], _ c: [Float]) -> [Float] {
        var result = c
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                result.withUnsafeMutableBufferPointer { pc in
                    sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                          a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                          beta: beta, c: pc.baseAddress!, ldc: ldc, implementation: implementation)
                }
            }
        }
        return result
    }

    /// Checks `result` against a Double reference, element by element, with the
    /// error bound of a Float dot product: |error| ≤ 2·√k·ε·(|α|·Σ|a||b| + |β·c|) (+ the final rounding).
    /// Padding columns of C must come back untouched, bit for bit.
    func expectMatchesReference(_ result: [Float], a: [Float], b: [Float], c: [Float],
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let epsilon = Double(Float.ulpOfOne)
        var mismatches = 0, worst = ""
        var worstRatio = 0.0
        var touchedPadding = 0
        for i in 0..<m {
            for j in 0..<ldc {
                let got = result[i * ldc + j]
                guard j < n else {
                    if got.bitPattern != c[i * ldc + j].bitPattern { touchedPadding += 1 }
                    continue
                }
                var exact = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let term = opA(a, i, p) * opB(b, p, j)
                    exact += term
                    magnitude += abs(term)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])   // beta = 0: C is not read
                let expected = Double(alpha) * exact + old
                let bound = (2 * Double(k + 1).squareRoot() + 1) * epsilon * (abs(Double(alpha)) * magnitude + abs(old))
                    + epsilon * abs(expected) + Double(Float.leastNonzeroMagnitude)
                let error = abs(Double(got) - expected)
                if !(error <= bound) {
                    mismatches += 1
                    if !(error / bound <= worstRatio) {
                        worstRatio = error / bound
                        worst = "C[\(i), \(j)] = \(got), expected \(expected) ± \(bound)"
                    }
                }
            }
        }
        #expect(mismatches == 0, "\(testDescription): \(mismatches) of \(m * n) elements off; worst \(worst)",
                sourceLocation: sourceLocation)
        #expect(touchedPadding == 0, "\(testDescription): wrote \(touchedPadding) values beyond n in C's rows",
                sourceLocation: sourceLocation)
    }
}

private let transposeCombinations = [(false, false), (false, true), (true, false), (true, true)]

@Suite("sgemm")
struct GEMMTests {
    static let plainCases: [GEMMCase] = [(1, 1, 1), (7, 33, 5), (13, 70, 300), (65, 129, 257), (6, 32, 256), (5, 31, 2)]
        .flatMap { size in
            transposeCombinations.map { GEMMCase(m: size.0, n: size.1, k: size.2, transposeA: $0.0, transposeB: $0.1) }
        }
        .flatMap(\.onEveryImplementation)

    static let scaledAndStridedCases: [GEMMCase] =
        [(7, 33, 5, Float(-0.75), Float(0.5), 3), (13, 70, 300, 2, -1, 5), (65, 129, 257, 0.5, 1, 1), (1, 1, 1, 3, -2, 2),
         (9, 59, 20, 1, 0.5, 2)]   // 59 = 32 + 27: a ragged last panel wider than one SIMD16
        .flatMap { size in
            transposeCombinations.map {
                GEMMCase(m: size.0, n: size.1, k: size.2, transposeA: $0.0, transposeB: $0.1,
                         alpha: size.3, beta: size.4, padding: size.5)
            }
        }
        .flatMap(\.onEveryImplementation)

    @Test(arguments: plainCases)
    func productMatchesDoubleReferenceForEveryTransposeAndRaggedTile(_ testCase: GEMMCase) {
        let (a, b, c) = testCase.operands(seed: UInt64(testCase.m * 1000 + testCase.k))
        testCase.expectMatchesReference(testCase.run(a, b, c), a: a, b: b, c: c)
    }

    @Test(arguments: scaledAndStridedCases)
    func alphaBetaAndLeadingDimensionsBeyondTheWidthAreHonoured(_ testCase: GEMMCase) {
        let (a, b, c) = testCase.operands(seed: UInt64(testCase.n * 1000 + testCase.k))
        testCase.expectMatchesReference(testCase.run(a, b, c), a: a, b: b, c: c)
    }

    @Test func betaZeroIgnoresWhatCHeldEvenNaN() {
        // Tensor ops hand sgemm uninitialised output memory with beta = 0.
        for testCase in GEMMCase(m: 7, n: 9, k: 4).onEveryImplementation {
            let (a, b, _) = testCase.operands(seed: 100)
            let garbage = [Float](repeating: .nan, count: 7 * 9)
            let result = testCase.run(a, b, garbage)
            #expect(result.allSatisfy { $0.isFinite }, "\(testCase.testDescription)")
            testCase.expectMatchesReference(result, a: a, b: b, c: garbage)
        }
    }

    @Test func zeroDepthOrZeroAlphaOnlyScalesC() {
        for testCase in [GEMMCase(m: 3, n: 4, k: 0, beta: 2.5), GEMMCase(m: 3, n: 4, k: 5, alpha: 0, beta: -1)]
            .flatMap(\.onEveryImplementation) {
            let (a, b, c) = testCase.operands(seed: 101)
            let result = testCase.run(a, b, c)
            #expect(result == c.map { $0 * testCase.beta }, "\(testCase.testDescription)")
        }
    }

    @Test func emptyOutputLeavesCUntouched() {
        for testCase in [GEMMCase(m: 0, n: 4, k: 3), GEMMCase(m: 3, n: 0, k: 3, padding: 2)]
            .flatMap(\.onEveryImplementation) {
            let (a, b, c) = testCase.operands(seed: 102)
            let result = testCase.run(a, b, c)
            #expect(result.count == c.count)
            #expect(zip(result, c).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(testCase.testDescription)")
        }
    }

    @Test func theSystemOpenBLASIsFoundWhereItIsInstalled() {
        // Debian's libopenblas0 puts libopenblas.so.0 on the loader's path; CI installs it.
        let paths: [String] = ["/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/libopenblas.so.0"]
        let installed = paths.contains { path in access(path, F_OK) == 0 }
        #expect(OpenBLAS.isAvailable == (installed && getenv("NORMKIT_NO_OPENBLAS") == nil))
        if OpenBLAS.isAvailable { #expect(OpenBLAS.coreName != nil) }
    }

    @Test("automatic sgemm prefers OpenBLAS only when its kernels are as wide as the CPU's vectors",
          arguments: [(false, "Haswell", true), (false, nil, true), (true, "SkylakeX", true),
                      (true, "Cooperlake", true), (true, "Haswell", false), (true, "Prescott", false), (true, nil, false)])
    func openBLASKernelWidth(cpuHasAVX512: Bool, coreName: String?, preferred: Bool) {
        #expect(OpenBLAS.kernelsUseFullWidth(cpuHasAVX512: cpuHasAVX512, coreName: coreName) == preferred)
    }

    @Test func threadedProductMatchesReferenceAndTheSingleThreadedResult() {
        // 2·128·256·128 flops is above the threading threshold; 256 columns are 8 panels.
        let testCase = GEMMCase(m: 128, n: 256, k: 128, transposeB: true, alpha: 1.5, beta: 0.25)
        let (a, b, c) = testCase.operands(seed: 103)
        var threaded: [Float] = [], serial: [Float] = []
        withExclusiveThreadCount {
            Threading.count = 2
            threaded = testCase.run(a, b, c)
            Threading.count = 1
            serial = testCase.run(a, b, c)
        }

        testCase.expectMatchesReference(threaded, a: a, b: b, c: c)
        // Each thread owns whole column panels and packs them exactly as one thread would,
        // so the thread count must not change a single bit.
        #expect(threaded == serial)
    }
}
