/// Everything that can be wrong with an IDX file or with a dataset made of IDX files.
///
/// Each case names the file it is about, so a message read on its own says which
/// file to look at. Offsets and byte counts refer to the uncompressed IDX bytes
/// (after inflating a `.gz` file); the IDX header is the 4-byte magic number
/// followed by one big-endian `UInt32` per dimension.
public enum IDXError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No file exists at `path`.
    case fileNotFound(path: String)
    /// The file exists but could not be read (a directory, no permission, an I/O
    /// error); `reason` is the operating system's explanation.
    case unreadable(path: String, reason: String)
    /// The file starts like gzip (0x1f 0x8b) but zlib rejected it; `zlibMessage` is zlib's own,
    /// `memberOffset` the byte at which the rejected member starts: 0 for the first, else the end
    /// of a complete member, after which the file holds something that is not another member.
    case corruptGzip(path: String, zlibMessage: String, memberOffset: Int)
    /// The gzip data ends before the end of its last member.
    case truncatedGzip(path: String, compressedByteCount: Int, inflatedByteCount: Int)
    /// The file ends inside the header: it has `foundByteCount` bytes where the magic
    /// number and dimensions need `expectedByteCount`.
    case truncatedHeader(path: String, expectedByteCount: Int, foundByteCount: Int)
    /// The first four bytes are not an IDX magic number for unsigned bytes, or give a
    /// different number of dimensions than the caller asked for (`expectedRank`;
    /// `nil` when any rank would do).
    case wrongMagic(path: String, found: UInt32, expectedRank: Int?)
    /// The magic number's third byte names an element type other than 0x08 (unsigned byte).
    case unsupportedElementType(path: String, typeCode: UInt8)
    /// The header describes a shape no IDX reader should accept; see `DimensionProblem`.
    case impossibleDimensions(path: String, problem: DimensionProblem)
    /// The data after the header is shorter than the dimensions require.
    case truncatedData(path: String, dimensions: [Int], expectedByteCount: Int, foundByteCount: Int, dataOffset: Int)
    /// The data after the header is longer than the dimensions allow; extra bytes are
    /// treated as corruption rather than silently ignored.
    case trailingBytes(path: String, dimensions: [Int], expectedByteCount: Int, foundByteCount: Int, dataOffset: Int)
    /// An images file and its labels file disagree on how many examples they hold.
    case countMismatch(imagesPath: String, imageCount: Int, labelsPath: String, labelCount: Int)
    /// A split of a dataset holds no image data: no images, or images of 0 rows or columns
    /// (`dimensions` is the images file's (count, rows, columns)). Nothing could train on it.
    case noImageData(path: String, dimensions: [Int])
    /// A dataset file is missing from `directory`; `lookedFor` lists every file name tried.
    case missingDatasetFile(directory: String, lookedFor: [String])
    /// A resource that should have been bundled with NormKitData is absent (a packaging fault).
    case missingResource(name: String)

    /// What is impossible about an IDX header's dimensions.
    public enum DimensionProblem: Sendable, Equatable {
        /// The magic number's fourth byte says the array has no dimensions.
        case noDimensions
        /// More dimensions than `maximum` (`IDXReader.maximumRank`).
        case tooManyDimensions(count: Int, maximum: Int)
        /// The product of `dimensions` does not fit in an `Int`.
        case sizeOverflows(dimensions: [Int])
        /// The product of `dimensions` is larger than `limit` (`IDXReader.maximumElementCount`).
        case sizeExceedsLimit(dimensions: [Int], elementCount: Int, limit: Int)
    }

    /// The file this error is about: for `countMismatch` the images file, for
    /// `missingDatasetFile` the directory searched, for `missingResource` the resource's name.
    public var path: String {
        switch self {
        case .fileNotFound(let path),
             .unreadable(let path, _),
             .corruptGzip(let path, _, _),
             .truncatedGzip(let path, _, _),
             .truncatedHeader(let path, _, _),
             .wrongMagic(let path, _, _),
             .unsupportedElementType(let path, _),
             .impossibleDimensions(let path, _),
             .truncatedData(let path, _, _, _, _),
             .trailingBytes(let path, _, _, _, _),
             .countMismatch(imagesPath: let path, _, _, _),
             .noImageData(let path, _),
             .missingDatasetFile(directory: let path, _),
             .missingResource(name: let path):
            return path
        }
    }

    /// One line that starts with the file and says what is wrong, with the numbers.
    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): no such file"
        case .unreadable(let path, let reason):
            return "\(path): cannot read: \(reason)"
        case .corruptGzip(let path, let zlibMessage, let memberOffset):
            guard memberOffset > 0 else { return "\(path): corrupt gzip data: \(zlibMessage)" }
            return "\(path): corrupt gzip data from byte \(memberOffset), after a complete gzip member: "
                + "\(zlibMessage) (what follows the member is not another gzip member)"
        case .truncatedGzip(let path, let compressedByteCount, let inflatedByteCount):
            return "\(path): truncated gzip data: the \(compressedByteCount) compressed bytes end inside a gzip member "
                + "(\(inflatedByteCount) bytes inflated before the end)"
        case .truncatedHeader(let path, let expectedByteCount, let foundByteCount):
            return "\(path): truncated header: needs \(expectedByteCount) bytes for the magic number and dimensions, "
                + "found \(foundByteCount)"
        case .wrongMagic(let path, let found, let expectedRank):
            let expected = expectedRank.map { _hex(0x0000_0800 | UInt32($0)) } ?? "0x000008NN (NN = dimension count)"
            var message = "\(path): wrong magic number: expected \(expected), found \(_hex(found))"
            if found & 0xFFFF_FF00 == 0x0000_0800, let expectedRank {
                message += " (an array with \(found & 0xFF) dimensions where \(expectedRank) were expected)"
            } else if found >> 16 == 0x1f8b {
                message += " (gzip data inside gzip?)"
            }
            return message
        case .unsupportedElementType(let path, let typeCode):
            return "\(path): unsupported element type \(_hex(typeCode)) (\(_idxTypeName(typeCode))); "
                + "only 0x08 (unsigned byte) is supported"
        case .impossibleDimensions(let path, let problem):
            return "\(path): impossible dimensions: \(problem)"
        case .truncatedData(let path, let dimensions, let expectedByteCount, let foundByteCount, let dataOffset):
            return "\(path): truncated: header says \(_shape(dimensions)) = \(expectedByteCount) bytes of data, "
                + "found \(foundByteCount) (offset \(dataOffset))"
        case .trailingBytes(let path, let dimensions, let expectedByteCount, let foundByteCount, let dataOffset):
            return "\(path): trailing bytes: header says \(_shape(dimensions)) = \(expectedByteCount) bytes of data, "
                + "found \(foundByteCount) (offset \(dataOffset)); \(foundByteCount - expectedByteCount) extra bytes "
                + "from offset \(dataOffset + expectedByteCount)"
        case .countMismatch(let imagesPath, let imageCount, let labelsPath, let labelCount):
            return "\(imagesPath): holds \(imageCount) images but \(labelsPath) holds \(labelCount) labels"
        case .noImageData(let path, let dimensions):
            return "\(path): no image data: \(_shape(dimensions)) (images × rows × columns); a dataset split needs "
                + "at least one image of at least 1×1 pixels"
        case .missingDatasetFile(let directory, let lookedFor):
            return "\(directory): none of \(lookedFor.joined(separator: ", ")) found"
        case .missingResource(let name):
            return "\(name): resource missing from the NormKitData bundle"
        }
    }
}

extension IDXError.DimensionProblem: CustomStringConvertible {
    /// Says what is wrong with the shape, with the numbers.
    public var description: String {
        switch self {
        case .noDimensions:
            return "the header declares 0 dimensions"
        case .tooManyDimensions(let count, let maximum):
            return "the header declares \(count) dimensions, at most \(maximum) are supported"
        case .sizeOverflows(let dimensions):
            return "\(_shape(dimensions)) elements overflow Int"
        case .sizeExceedsLimit(let dimensions, let elementCount, let limit):
            return "\(_shape(dimensions)) = \(elementCount) elements, more than the limit of \(limit)"
        }
    }
}

/// `0x00000803` style: eight upper-case hex digits after `0x`.
private func _hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

/// `0x0D` style: two upper-case hex digits after `0x`.
private func _hex(_ value: UInt8) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: 2 - digits.count) + digits
}

/// `60000×28×28` style.
private func _shape(_ dimensions: [Int]) -> String {
    dimensions.map(String.init).joined(separator: "×")
}

/// The element type an IDX type code stands for, as the format's description names them.
private func _idxTypeName(_ typeCode: UInt8) -> String {
    switch typeCode {
    case 0x08: "unsigned byte"
    case 0x09: "signed byte"
    case 0x0B: "16-bit integer"
    case 0x0C: "32-bit integer"
    case 0x0D: "32-bit float"
    case 0x0E: "64-bit float"
    default: "not an IDX type"
    }
}
