#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The system OpenBLAS, found at run time.
///
/// NormKit has no build-time dependency on a BLAS: on first use it tries
/// `dlopen("libopenblas.so.0")` (Debian's `libopenblas0-pthread`, which
/// `libopenblas-dev` pulls in) and `dlsym("cblas_sgemm")`. Where that fails
/// `sgemm` uses NormKit's own kernel, which computes the same products.
///
/// OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons and silently
/// falls back to SSE3 kernels (5× slower). When the CPU has AVX-512 (F, DQ, BW,
/// VL), NormKit loads the library with `OPENBLAS_CORETYPE=SkylakeX`, so its
/// AVX-512 kernels run, and then restores the variable to what it was, so
/// child processes and other libraries see the environment's own value.
/// `NORMKIT_NO_OPENBLAS=1` keeps NormKit on its own kernels.
public enum OpenBLAS {
    typealias SGEMM = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
        UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void
    typealias CoreName = @convention(c) () -> UnsafeMutablePointer<CChar>?

    struct Library: @unchecked Sendable {
        let sgemm: SGEMM
        let setThreads: SetThreads?
        let coreName: CoreName?
    }

    /// The library's entry points, or nil where it is not installed. Loaded once.
    static let library: Library? = load()

    /// Threads OpenBLAS was last told to use (it keeps its own pool).
    private static let configuredThreads = Atomic<Int>(0)

    /// Loads the library now, if it is not loaded yet.
    ///
    /// Loading sets and restores `OPENBLAS_CORETYPE` (see above), and glibc's
    /// `setenv` is not safe while another thread reads the environment. A program
    /// that starts threads of its own before its first matrix product should call
    /// this first, while it has one thread; the `normkit` command does so.
    /// Without it the library loads on the first product that wants it.
    public static func loadEarly() { _ = library }

    /// Whether the system OpenBLAS was found (and `sgemm` may use it).
    public static var isAvailable: Bool { library != nil }

    /// The kernel family OpenBLAS chose for this CPU (for example "SkylakeX"), or nil.
    public static var coreName: String? {
        guard let name = library?.coreName?() else { return nil }
        return String(cString: name)
    }

    /// Whether `.automatic` may use OpenBLAS: it is installed and runs kernels
    /// as wide as the CPU's vectors (a build that cannot, say one too old to know
    /// SkylakeX, would lose to NormKit's own AVX-512 kernel).
    public static let isPreferred: Bool = library != nil && kernelsUseFullWidth(cpuHasAVX512: cpuHasAVX512(), coreName: coreName)

    /// Whether OpenBLAS's kernel family `coreName` uses all the vector width the CPU has.
    public static func kernelsUseFullWidth(cpuHasAVX512: Bool, coreName: String?) -> Bool {
        guard cpuHasAVX512 else { return true }
        let name = coreName?.lowercased() ?? ""
        return ["skylakex", "cooperlake", "sapphirerapids"].contains { name.contains($0) }
    }

    private static func load() -> Library? {
        if getenvString("NORMKIT_NO_OPENBLAS") != nil { return nil }
        // OpenBLAS reads OPENBLAS_CORETYPE once, while it loads. Environments set it
        // machine-wide for NumPy (this project's machines say Haswell), which would give
        // NormKit AVX2 kernels on an AVX-512 CPU: the CNN's epoch took 13.4 s instead of
        // 10.4. So NormKit loads its OpenBLAS with the kernels the CPU can run, then puts
        // the variable back as it was for everything else (child processes, NumPy).
        let previous = getenvString("OPENBLAS_CORETYPE")
        let matching = cpuHasAVX512() ? "SkylakeX" : nil
        if let matching { setenv("OPENBLAS_CORETYPE", matching, 1) }
        defer {
            if matching != nil {
                if let previous { setenv("OPENBLAS_CORETYPE", previous, 1) } else { unsetenv("OPENBLAS_CORETYPE") }
            }
        }
        guard let handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL),
              let sgemm = dlsym(handle, "cblas_sgemm") else { return nil }
        return Library(
            sgemm: unsafeBitCast(sgemm, to: SGEMM.self),
            setThreads: dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) },
            coreName: dlsym(handle, "openblas_get_corename").map { unsafeBitCast($0, to: CoreName.self) })
    }

    /// C = alpha·op(A)·op(B) + beta·C, row-major, through cblas_sgemm, on
    /// `threads` threads. False (nothing done) when OpenBLAS is absent or a size
    /// exceeds its 32-bit integers.
    static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int) -> Bool {
        guard let library else { return false }
        let limit = Int(Int32.max)
        guard m <= limit, n <= limit, k <= limit, lda <= limit, ldb <= limit, ldc <= limit else { return false }
        if configuredThreads.exchange(threads, ordering: .relaxed) != threads {
            library.setThreads?(Int32(threads))
        }
        let rowMajor: Int32 = 101, noTranspose: Int32 = 111, transpose: Int32 = 112
        library.sgemm(rowMajor, transposeA ? transpose : noTranspose, transposeB ? transpose : noTranspose,
                      Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return true
    }

    /// Whether /proc/cpuinfo lists the AVX-512 subsets OpenBLAS's SkylakeX kernels use.
    private static func cpuHasAVX512() -> Bool {
        guard let file = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            guard text.hasPrefix("flags") else { continue }
            let flags = Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }))
            return ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy { flags.contains(Substring($0)) }
        }
        return false
    }
}
