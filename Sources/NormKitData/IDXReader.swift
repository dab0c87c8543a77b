#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The contents of an IDX file of unsigned bytes: its shape and its elements.
public struct IDXArray: Sendable, Equatable {
    /// The size of each dimension, outermost first (for MNIST images: count, rows, columns).
    public let dimensions: [Int]
    /// The elements in row-major order (the last dimension varies fastest);
    /// `elements.count` is the product of `dimensions`.
    public let elements: [UInt8]

    init(dimensions: [Int], elements: [UInt8]) {
        self.dimensions = dimensions
        self.elements = elements
    }
}

/// Reads IDX files, the format MNIST and Fashion-MNIST are distributed in, plain or gzip-compressed.
///
/// An IDX file is a big-endian header followed by the elements:
///
///     offset  size      content
///     0       2         0x00 0x00
///     2       1         element type: 0x08 = unsigned byte (the only one supported here)
///     3       1         number of dimensions, R
///     4       4 · R     each dimension as a big-endian UInt32, outermost first
///     4 + 4R  product   the elements, row-major
///
/// A file whose first two bytes are 0x1f 0x8b is inflated as gzip first. The reader
/// is strict: a file must hold exactly as many data bytes as its header promises,
/// because both a short file and a long one mean it is not what its header says.
/// See <http://yann.lecun.com/exdb/mnist/> for the format's original description.
public enum IDXReader {
    /// The most dimensions a header may declare; MNIST-style data uses 1 (labels) or 3 (images).
    public static let maximumRank = 4
    /// The most elements a header may declare (2 GiB of bytes), far above any MNIST-style
    /// dataset; a larger claim is taken as a corrupt header rather than a reason to allocate.
    public static let maximumElementCount = 1 << 31

    /// Reads the IDX file at `path`, inflating it first if it is gzip-compressed.
    ///
    /// - Parameters:
    ///   - path: the file to read; used verbatim in every error's description.
    ///   - expectedRank: the number of dimensions the caller needs (3 for images,
    ///     1 for labels), or `nil` to accept any rank from 1 to `maximumRank`.
    /// - Returns: the file's shape and elements.
    /// - Throws: `IDXError` naming `path`: `.fileNotFound` and `.unreadable` for the
    ///   file itself, otherwise whatever `decode(_:path:expectedRank:)` throws.
    public static func read(path: String, expectedRank: Int? = nil) throws(IDXError) -> IDXArray {
        let fileBytes = try _readWholeFile(atPath: path)
        return try decode(fileBytes, path: path, expectedRank: expectedRank)
    }

    /// Decodes the bytes of an IDX file already in memory, inflating them first if they are gzip.
    ///
    /// - Parameters:
    ///   - fileBytes: the whole file, gzip-compressed or plain.
    ///   - path: the name to put in errors (the file the bytes came from).
    ///   - expectedRank: the number of dimensions required, or `nil` for any.
    /// - Returns: the shape and elements.
    /// - Throws: `IDXError.corruptGzip` / `.truncatedGzip` when inflating fails;
    ///   `.truncatedHeader`, `.wrongMagic`, `.unsupportedElementType`,
    ///   `.impossibleDimensions` for a bad header; `.truncatedData` / `.trailingBytes`
    ///   when the data is shorter or longer than the header says.
    public static func decode(
        _ fileBytes: [UInt8], path: String, expectedRank: Int? = nil
    ) throws(IDXError) -> IDXArray {
        var bytes = fileBytes
        if _looksLikeGzip(bytes) {
            do {
                bytes = try _inflateGzip(bytes)
            } catch {
                switch error {
                case .corrupt(let zlibMessage, let memberOffset):
                    throw .corruptGzip(path: path, zlibMessage: zlibMessage, memberOffset: memberOffset)
                case .truncated(let compressedByteCount, let inflatedByteCount):
                    throw .truncatedGzip(
                        path: path, compressedByteCount: compressedByteCount, inflatedByteCount: inflatedByteCount
                    )
                }
            }
        }

        let magicByteCount = 4
        guard bytes.count >= magicByteCount else {
            throw .truncatedHeader(path: path, expectedByteCount: magicByteCount, foundByteCount: bytes.count)
        }
        let magic = _bigEndianUInt32(bytes, at: 0)
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw .wrongMagic(path: path, found: magic, expectedRank: expectedRank)
        }
        let typeCode = bytes[2]
        guard typeCode == 0x08 else {
            throw .unsupportedElementType(path: path, typeCode: typeCode)
        }
        let rank = Int(bytes[3])
        guard rank > 0 else {
            throw .impossibleDimensions(path: path, problem: .noDimensions)
        }
        guard rank <= maximumRank else {
            throw .impossibleDimensions(path: path, problem: .tooManyDimensions(count: rank, maximum: maximumRank))
        }
        if let expectedRank, rank != expectedRank {
            throw .wrongMagic(path: path, found: magic, expectedRank: expectedRank)
        }

        let headerByteCount = magicByteCount + 4 * rank
        guard bytes.count >= headerByteCount else {
            throw .truncatedHeader(path: path, expectedByteCount: headerByteCount, foundByteCount: bytes.count)
        }
        let dimensions = (0..<rank).map { Int(_bigEndianUInt32(bytes, at: magicByteCount + 4 * $0)) }
        var elementCount = 1
        for dimension in dimensions {
            let (product, overflowed) = elementCount.multipliedReportingOverflow(by: dimension)
            guard !overflowed else {
                throw .impossibleDimensions(path: path, problem: .sizeOverflows(dimensions: dimensions))
            }
            elementCount = product
        }
        guard elementCount <= maximumElementCount else {
            throw .impossibleDimensions(
                path: path,
                problem: .sizeExceedsLimit(
                    dimensions: dimensions, elementCount: elementCount, limit: maximumElementCount
                )
            )
        }

        let dataByteCount = bytes.count - headerByteCount
        if dataByteCount < elementCount {
            throw .truncatedData(
                path: path, dimensions: dimensions,
                expectedByteCount: elementCount, foundByteCount: dataByteCount, dataOffset: headerByteCount
            )
        }
        if dataByteCount > elementCount {
            throw .trailingBytes(
                path: path, dimensions: dimensions,
                expectedByteCount: elementCount, foundByteCount: dataByteCount, dataOffset: headerByteCount
            )
        }
        bytes.removeFirst(headerByteCount)
        return IDXArray(dimensions: dimensions, elements: bytes)
    }
}

/// The big-endian `UInt32` at `offset`; the caller has checked that four bytes are there.
private func _bigEndianUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].reduce(0) { ($0 << 8) | UInt32($1) }
}

/// Reads a whole file into memory, telling a missing file apart from an unreadable one.
///
/// POSIX calls rather than Foundation so that the error carries `errno`'s reason
/// (for example "Is a directory" or "Permission denied").
private func _readWholeFile(atPath path: String) throws(IDXError) -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        let code = errno
        if code == ENOENT {
            throw .fileNotFound(path: path)
        }
        throw .unreadable(path: path, reason: String(cString: strerror(code)))
    }
    defer { close(descriptor) }

    // One byte more than the file's size, so the read that returns end-of-file
    // needs no extra room; pipes and special files report size 0 and grow instead.
    var fileStatus = stat()
    var capacity = 1 << 16
    if fstat(descriptor, &fileStatus) == 0, fileStatus.st_size > 0 {
        capacity = Int(fileStatus.st_size) + 1
    }
    var bytes = [UInt8](repeating: 0, count: capacity)
    var byteCount = 0
    while true {
        if byteCount == bytes.count {
            bytes.append(contentsOf: repeatElement(0, count: bytes.count))
        }
        let result = bytes.withUnsafeMutableBytes { buffer in
            read(descriptor, buffer.baseAddress! + byteCount, buffer.count - byteCount)
        }
        if result == 0 {
            break
        }
        if result < 0 {
            let code = errno
            if code == EINTR {
                continue
            }
            throw .unreadable(path: path, reason: String(cString: strerror(code)))
        }
        byteCount += result
    }
    bytes.removeLast(bytes.count - byteCount)
    return bytes
}
