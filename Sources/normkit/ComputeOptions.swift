import ArgumentParser
import Foundation
import NormKit

/// Options every command that computes shares.
struct ComputeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for the kernels (default: NORMKIT_THREADS or every available core).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        // The library ignores a value it cannot use and takes every core; on the command line a
        // typo (NORMKIT_THREADS=o, =0) should not silently change what is measured.
        if threads == nil, let text = ProcessInfo.processInfo.environment["NORMKIT_THREADS"], !text.isEmpty,
           (Int(text) ?? 0) < 1 {
            throw ValidationError("NORMKIT_THREADS must be a whole number at least 1, got '\(text)' (or pass --threads)")
        }
    }

    func apply() { if let threads { Threading.count = threads } }
}
