import Foundation

/// A safetensors file in memory: named tensors plus the optional string metadata.
///
/// Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
/// header length N, N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets:
/// [begin, end)}, "__metadata__": {string: string}}`, then the data section:
/// each tensor's little-endian row-major bytes, offsets relative to the section,
/// contiguous from 0 and covering it exactly.
///
/// Reading trusts nothing in the file: the header length is checked against
/// the file's size (and a 100 MB limit, as in the reference implementation)
/// before anything is allocated, and every offset, size and dtype is checked
/// before a tensor is built; violations throw `SafetensorsError`.
public struct SafetensorsFile: Sendable, Equatable {
    /// The largest header accepted: the reference implementation's limit.
    public static let maximumHeaderByteCount = 100_000_000

    public var tensors: [String: SafetensorsTensor]
    /// Free-form string pairs (`__metadata__`); PyTorch's writer puts `{"format": "pt"}` here.
    public var metadata: [String: String]

    public init(tensors: [String: SafetensorsTensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The tensor named `name`, or `SafetensorsError.missingTensor` naming `path`.
    public func tensor(_ name: String, path: String) throws(SafetensorsError) -> SafetensorsTensor {
        guard let tensor = tensors[name] else { throw .missingTensor(path: path, tensor: name) }
        return tensor
    }

    // MARK: Reading

    /// Reads and validates the file at `path`.
    public static func read(path: String) throws(SafetensorsError) -> SafetensorsFile {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: _reason(error))
        }
        defer { try? handle.close() }
        do {
            let fileByteCount = Int(try handle.seekToEnd())
            try handle.seek(toOffset: 0)
            let lengthBytes = [UInt8](try handle.read(upToCount: 8) ?? Data())
            let headerByteCount = try checkedHeaderByteCount(lengthBytes, fileByteCount: fileByteCount, path: path)
            // Only now, with the length known to fit in the file, is anything the size of the file read.
            let header = [UInt8](try handle.read(upToCount: headerByteCount) ?? Data())
            let data = [UInt8](try handle.readToEnd() ?? Data())
            guard header.count == headerByteCount && 8 + header.count + data.count == fileByteCount else {
                throw SafetensorsError.unreadable(path: path, reason: "file changed size while being read")
            }
            return try decode(header: header[...], data: data[...], path: path)
        } catch let error as SafetensorsError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: _reason(error))
        }
    }

    /// Decodes a whole file held in memory; `path` only names it in errors.
    public static func decode(_ bytes: [UInt8], path: String) throws(SafetensorsError) -> SafetensorsFile {
        let headerByteCount = try checkedHeaderByteCount(Array(bytes.prefix(8)), fileByteCount: bytes.count, path: path)
        return try decode(header: bytes[8..<(8 + headerByteCount)], data: bytes[(8 + headerByteCount)...], path: path)
    }

    /// The header length, once it is known to fit in the file and under the limit.
    private static func checkedHeaderByteCount(_ lengthBytes: [UInt8], fileByteCount: Int,
                                               path: String) throws(SafetensorsError) -> Int {
        guard lengthBytes.count == 8 else { throw .truncatedHeaderLength(path: path, fileByteCount: fileByteCount) }
        let declared: UInt64 = _readLittleEndian(lengthBytes, at: 0)
        guard declared <= UInt64(maximumHeaderByteCount) else {
            throw .headerTooLarge(path: path, declaredByteCount: declared, limit: maximumHeaderByteCount)
        }
        guard declared <= UInt64(fileByteCount - 8) else {
            throw .headerPastEndOfFile(path: path, declaredByteCount: declared, availableByteCount: fileByteCount - 8)
        }
        return Int(declared)
    }

    /// - Parameters:
    ///   - header: the JSON bytes (file offset 8 onwards).
    ///   - data: the data section; `data_offsets` count from its start.
    private static func decode(header headerBytes: ArraySlice<UInt8>, data: ArraySlice<UInt8>,
                               path: String) throws(SafetensorsError) -> SafetensorsFile {
        if let bad = _firstInvalidUTF8Index(headerBytes) {
            throw .headerNotUTF8(path: path, byteOffset: 8 + bad - headerBytes.startIndex)
        }
        let header: _Header
        do {
            header = try JSONDecoder().decode(_Header.self, from: Data(headerBytes))
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.keyNotFound(_, context), let DecodingError.dataCorrupted(context) {
            guard let tensor = context.codingPath.first?.stringValue else {
                throw .invalidJSON(path: path, reason: _jsonReason(context))
            }
            let field = context.codingPath.dropFirst().map(\.stringValue).joined(separator: ".")
            throw .malformedEntry(path: path, tensor: tensor, problem: (field.isEmpty ? "" : "\(field): ") + context.debugDescription)
        } catch {
            throw .invalidJSON(path: path, reason: String(describing: error))
        }

        var placed: [(name: String, entry: _Header.Entry, dtype: SafetensorsDType)] = []
        for (name, entry) in header.entries {
            guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
                throw .unsupportedDType(path: path, tensor: name, dtype: entry.dtype,
                                        supported: SafetensorsDType.allCases.map(\.rawValue))
            }
            if let negative = entry.shape.first(where: { $0 < 0 }) {
                throw .malformedEntry(path: path, tensor: name, problem: "shape \(entry.shape) has negative dimension \(negative)")
            }
            guard entry.dataOffsets.count == 2 else {
                throw .malformedEntry(path: path, tensor: name,
                                      problem: "data_offsets must be [begin, end], found \(entry.dataOffsets)")
            }
            let (begin, end) = (entry.dataOffsets[0], entry.dataOffsets[1])
            guard begin >= 0 && begin <= end else {
                throw .malformedEntry(path: path, tensor: name, problem: "data_offsets [\(begin), \(end)) are not 0 ≤ begin ≤ end")
            }
            guard end <= data.count else {
                throw .offsetsOutOfRange(path: path, tensor: name, begin: begin, end: end, dataByteCount: data.count)
            }
            var expected = dtype.byteCount, overflow = false
            for dimension in entry.shape where !overflow {
                (expected, overflow) = expected.multipliedReportingOverflow(by: dimension)
            }
            guard !overflow && expected == end - begin else {
                throw .sizeMismatch(path: path, tensor: name, dtype: dtype.rawValue, shape: entry.shape,
                                    expectedByteCount: overflow ? Int.max : expected, foundByteCount: end - begin)
            }
            placed.append((name, entry, dtype))
        }

        // Contiguous from 0 and covering the data exactly, as the format requires.
        placed.sort { ($0.entry.dataOffsets[0], $0.entry.dataOffsets[1], $0.name) < ($1.entry.dataOffsets[0], $1.entry.dataOffsets[1], $1.name) }
        var covered = 0
        var previous: (name: String, range: Range<Int>)?
        for item in placed {
            let range = item.entry.dataOffsets[0]..<item.entry.dataOffsets[1]
            if range.lowerBound < covered, let previous {
                throw .overlappingTensors(path: path, tensor: item.name, range: range, other: previous.name,
                                          otherRange: previous.range)
            }
            if range.lowerBound > covered {
                throw .uncoveredBytes(path: path, range: covered..<range.lowerBound, dataByteCount: data.count)
            }
            covered = range.upperBound
            previous = (item.name, range)
        }
        if covered < data.count { throw .uncoveredBytes(path: path, range: covered..<data.count, dataByteCount: data.count) }

        var tensors: [String: SafetensorsTensor] = [:]
        for item in placed {
            tensors[item.name] = SafetensorsTensor(dtype: item.dtype, shape: item.entry.shape,
                                                   bytes: Array(data[(data.startIndex + item.entry.dataOffsets[0])..<(data.startIndex + item.entry.dataOffsets[1])]))
        }
        return SafetensorsFile(tensors: tensors, metadata: header.metadata ?? [:])
    }

    // MARK: Writing

    /// The file's bytes: tensors in name order, the header padded with spaces to a
    /// multiple of 8 bytes (as the reference writer does, so the data stays aligned).
    public func encoded() -> [UInt8] {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var data: [UInt8] = []
        for name in tensors.keys.sorted() {
            let tensor = tensors[name]!
            header[name] = ["dtype": tensor.dtype.rawValue, "shape": tensor.shape,
                            "data_offsets": [data.count, data.count + tensor.bytes.count]] as [String: Any]
            data += tensor.bytes
        }
        // Dictionaries of strings and integers always serialize.
        var json = [UInt8](try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes]))
        json += [UInt8](repeating: UInt8(ascii: " "), count: (8 - json.count % 8) % 8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + json.count + data.count)
        _appendLittleEndian(UInt64(json.count), to: &bytes)
        return bytes + json + data
    }

    /// Writes the file atomically: `path` holds either its old content or the new, never a mix.
    public func write(to path: String) throws(SafetensorsError) {
        do { try AtomicFile.write(encoded(), to: path) } catch {
            throw .unreadable(path: path, reason: error.reason)
        }
    }
}

/// The header as JSON: tensor entries plus the optional `__metadata__`.
struct _Header: Decodable {
    struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let dataOffsets: [Int]
        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    var entries: [(String, Entry)] = []
    var metadata: [String: String]?

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try container.decode([String: String].self, forKey: key)
            } else {
                entries.append((key.stringValue, try container.decode(Entry.self, forKey: key)))
            }
        }
    }
}

/// The index of the first byte that breaks UTF-8, or nil.
func _firstInvalidUTF8Index(_ header: ArraySlice<UInt8>) -> Int? {
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = header.makeIterator()
    var offset = header.startIndex
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let scalar): offset += scalar.count
        case .emptyInput: return nil
        case .error: return offset
        }
    }
}

private func _jsonReason(_ context: DecodingError.Context) -> String {
    if let underlying = context.underlyingError { return "\(context.debugDescription) (\(underlying))" }
    return context.debugDescription
}

func _reason(_ error: any Error) -> String {
    if let error = error as? CocoaError, let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError {
        return underlying.localizedDescription
    }
    return (error as NSError).localizedDescription
}
