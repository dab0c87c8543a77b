import CZlib
import Foundation

/// A fresh, empty directory under the system's temporary folder, removed with this object.
///
/// Each test makes its own, so tests running in parallel never see each other's files.
final class ScratchDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("NormKitDataTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    /// Writes `bytes` to `name` in this directory and returns the file's path.
    @discardableResult
    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let path = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The path `name` would have in this directory, whether or not it exists.
    func path(_ name: String) -> String {
        url.appendingPathComponent(name).path
    }
}

/// The bytes of an IDX file: magic `00 00 typeCode dimensionCount`, the dimensions as
/// big-endian `UInt32`s, then `payload` as is (which need not match the dimensions).
func idxFile(typeCode: UInt8 = 0x08, dimensions: [UInt32], payload: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, typeCode, UInt8(dimensions.count)]
    for dimension in dimensions {
        bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: dimension >> $0) }
    }
    return bytes + payload
}

/// A well-formed IDX file of unsigned bytes whose payload matches its dimensions.
func idxFile(dimensions: [Int], elements: [UInt8]) -> [UInt8] {
    precondition(
        dimensions.reduce(1, *) == elements.count, "test data: \(dimensions) does not hold \(elements.count) bytes"
    )
    return idxFile(dimensions: dimensions.map(UInt32.init), payload: elements)
}

/// `bytes` compressed as one gzip member by zlib's deflate, an encoder independent of
/// the inflater under test.
func gzipCompressed(_ bytes: [UInt8]) -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 + 16 asks deflate for a gzip header and trailer instead of zlib's.
    let initStatus = deflateInit2_(
        &stream, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
        ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)
    )
    precondition(initStatus == Z_OK, "deflateInit2_ failed: \(initStatus)")
    defer { deflateEnd(&stream) }

    var input = bytes
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))) + 64)
    let status = input.withUnsafeMutableBufferPointer { source in
        output.withUnsafeMutableBufferPointer { destination in
            stream.next_in = source.baseAddress
            stream.avail_in = UInt32(source.count)
            stream.next_out = destination.baseAddress
            stream.avail_out = UInt32(destination.count)
            return deflate(&stream, Z_FINISH)
        }
    }
    precondition(status == Z_STREAM_END, "deflate did not finish: \(status)")
    output.removeLast(Int(stream.avail_out))
    return output
}

/// Deterministic pseudo-random bytes, so compressed test files are not trivially small.
func patternedBytes(count: Int, seed: UInt32 = 1) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223
        return UInt8(truncatingIfNeeded: state >> 24)
    }
}
