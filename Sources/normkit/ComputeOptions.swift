import ArgumentParser
import NormKit

/// Options every command that computes shares.
struct ComputeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for the kernels (default: NORMKIT_THREADS or every available core).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func apply() { if let threads { Threading.count = threads } }
}
