/// Everything that can be wrong with a safetensors file.
///
/// Each case names the file and, where there is one, the tensor, with the
/// expected and found numbers. Offsets inside `data_offsets` are relative to the
/// data section, which starts at byte 8 + header length.
public enum SafetensorsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened, read or written; `reason` is the operating system's explanation.
    case unreadable(path: String, reason: String)
    /// The file is shorter than the 8-byte header length.
    case truncatedHeaderLength(path: String, fileByteCount: Int)
    /// The header length is larger than any header NormKit accepts (`Safetensors.maximumHeaderByteCount`).
    case headerTooLarge(path: String, declaredByteCount: UInt64, limit: Int)
    /// The header length runs past the end of the file.
    case headerPastEndOfFile(path: String, declaredByteCount: UInt64, availableByteCount: Int)
    /// The header is not UTF-8; `byteOffset` is the first bad byte's offset in the file.
    case headerNotUTF8(path: String, byteOffset: Int)
    /// The header is not a JSON object; `reason` is the JSON parser's explanation.
    case invalidJSON(path: String, reason: String)
    /// A header entry lacks a field or has one of the wrong type or value.
    case malformedEntry(path: String, tensor: String, problem: String)
    /// An element type NormKit does not read (or that the format does not define).
    case unsupportedDType(path: String, tensor: String, dtype: String, supported: [String])
    /// `data_offsets` span a different number of bytes than dtype × shape requires.
    case sizeMismatch(path: String, tensor: String, dtype: String, shape: [Int], expectedByteCount: Int, foundByteCount: Int)
    /// `data_offsets` end past the data section.
    case offsetsOutOfRange(path: String, tensor: String, begin: Int, end: Int, dataByteCount: Int)
    /// Two tensors claim the same bytes.
    case overlappingTensors(path: String, tensor: String, range: Range<Int>, other: String, otherRange: Range<Int>)
    /// Bytes of the data section no tensor owns (a gap or trailing bytes): the format requires exact coverage.
    case uncoveredBytes(path: String, range: Range<Int>, dataByteCount: Int)
    /// A tensor the reader needs is not in the file.
    case missingTensor(path: String, tensor: String)
    /// A tensor has a type the reader cannot use here (a float where an integer is needed).
    case wrongDType(path: String, tensor: String, expected: String, found: String)
    /// The `__metadata__` NormKit needs is absent or unreadable (checkpoints).
    case invalidMetadata(path: String, key: String, problem: String)

    /// The file this error is about.
    public var path: String {
        switch self {
        case .unreadable(let path, _), .truncatedHeaderLength(let path, _), .headerTooLarge(let path, _, _),
             .headerPastEndOfFile(let path, _, _), .headerNotUTF8(let path, _), .invalidJSON(let path, _),
             .malformedEntry(let path, _, _), .unsupportedDType(let path, _, _, _),
             .sizeMismatch(let path, _, _, _, _, _), .offsetsOutOfRange(let path, _, _, _, _),
             .overlappingTensors(let path, _, _, _, _), .uncoveredBytes(let path, _, _),
             .missingTensor(let path, _), .wrongDType(let path, _, _, _), .invalidMetadata(let path, _, _):
            path
        }
    }

    /// One line that starts with the file, names the tensor and gives expected and found.
    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            "\(path): cannot read or write: \(reason)"
        case let .truncatedHeaderLength(path, fileByteCount):
            "\(path): not a safetensors file: expected at least 8 bytes (the header length), found \(fileByteCount)"
        case let .headerTooLarge(path, declared, limit):
            "\(path): header length \(declared) bytes exceeds the limit of \(limit) bytes"
        case let .headerPastEndOfFile(path, declared, available):
            "\(path): header length \(declared) bytes runs past the end of the file (\(available) bytes after the length)"
        case let .headerNotUTF8(path, byteOffset):
            "\(path): header is not valid UTF-8 (first bad byte at file offset \(byteOffset))"
        case let .invalidJSON(path, reason):
            "\(path): header is not a valid JSON object: \(reason)"
        case let .malformedEntry(path, tensor, problem):
            "\(path): tensor '\(tensor)': \(problem)"
        case let .unsupportedDType(path, tensor, dtype, supported):
            "\(path): tensor '\(tensor)': unsupported dtype '\(dtype)' (supported: \(supported.joined(separator: ", ")))"
        case let .sizeMismatch(path, tensor, dtype, shape, expected, found):
            "\(path): tensor '\(tensor)': \(dtype) of shape \(shape) needs \(expected) bytes, data_offsets span \(found)"
        case let .offsetsOutOfRange(path, tensor, begin, end, dataByteCount):
            "\(path): tensor '\(tensor)': data_offsets [\(begin), \(end)) end past the data section "
                + "(\(dataByteCount) bytes)"
        case let .overlappingTensors(path, tensor, range, other, otherRange):
            "\(path): tensor '\(tensor)' at [\(range.lowerBound), \(range.upperBound)) overlaps tensor '\(other)' "
                + "at [\(otherRange.lowerBound), \(otherRange.upperBound))"
        case let .uncoveredBytes(path, range, dataByteCount):
            "\(path): data bytes [\(range.lowerBound), \(range.upperBound)) of \(dataByteCount) belong to no tensor "
                + "(the format requires offsets contiguous from 0 and covering the data exactly)"
        case let .missingTensor(path, tensor):
            "\(path): tensor '\(tensor)' not found"
        case let .wrongDType(path, tensor, expected, found):
            "\(path): tensor '\(tensor)': expected \(expected), found \(found)"
        case let .invalidMetadata(path, key, problem):
            "\(path): __metadata__ '\(key)': \(problem)"
        }
    }
}
