import Foundation
import Glibc

/// Why an atomic write failed.
public struct AtomicFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    /// The failing step and the operating system's explanation.
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Whole-file writes that a crash cannot tear.
///
/// The bytes go to a temporary file in the destination's directory (so the
/// rename stays within one file system), which is flushed to disk (`fsync`) and
/// then renamed over the destination; the directory is flushed too so the rename
/// itself survives a power cut. At every moment `path` holds either the complete
/// old content or the complete new one. A process killed mid-write leaves at
/// most a stray `.NAME.tmp-…` file beside it.
public enum AtomicFile {
    /// Replaces the content of `path` with `bytes`, atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws(AtomicFileError) {
        try write(bytes, to: path, simulatingCrashAfter: nil)
    }

    /// `simulatingCrashAfter`: for tests, stop (as if killed) after writing that many bytes
    /// of the temporary file, leaving it behind and the destination untouched.
    static func write(_ bytes: [UInt8], to path: String, simulatingCrashAfter crashByteCount: Int?) throws(AtomicFileError) {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = "\(directory)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure(path, "cannot create \(temporary)") }
        var closed = false
        var committed = false
        defer {
            if !closed { close(descriptor) }
            if !committed && crashByteCount == nil { unlink(temporary) }
        }

        let limit = min(bytes.count, crashByteCount ?? bytes.count)
        var written = 0
        while written < limit {
            let result = bytes.withUnsafeBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress! + written, limit - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw failure(path, "write to \(temporary) failed after \(written) of \(bytes.count) bytes")
            }
            written += result
        }
        if let crashByteCount {
            throw AtomicFileError(path: path, reason: "simulated crash after \(crashByteCount) of \(bytes.count) bytes")
        }
        guard fsync(descriptor) == 0 else { throw failure(path, "fsync of \(temporary) failed") }
        closed = true
        guard close(descriptor) == 0 else { throw failure(path, "close of \(temporary) failed") }
        guard rename(temporary, path) == 0 else { throw failure(path, "rename of \(temporary) to \(path) failed") }
        committed = true
        // Make the rename durable; a failure here cannot undo it, so it is not an error.
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    private static func failure(_ path: String, _ step: String) -> AtomicFileError {
        AtomicFileError(path: path, reason: "\(step): \(String(cString: strerror(errno)))")
    }
}
