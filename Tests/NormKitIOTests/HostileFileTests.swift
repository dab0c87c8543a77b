// Hostile safetensors files: each is rejected with a typed error naming the
// file, the tensor and expected vs found — never a crash, never an allocation
// sized by an untrusted length.

import Foundation
@testable import NormKitIO
import Testing

/// A file made of a raw header (any bytes) and data, with the header length given or taken from the header.
private func file(header: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    var bytes: [UInt8] = []
    _appendLittleEndian(declaredLength ?? UInt64(header.count), to: &bytes)
    return bytes + header + data
}

private func file(json: String, data: [UInt8] = []) -> [UInt8] { file(header: Array(json.utf8), data: data) }

/// The error decoding `bytes` throws (after writing them to disk, so the file path is in play too).
private func rejection(_ bytes: [UInt8]) throws -> SafetensorsError {
    try withScratchDirectory { directory in
        let path = "\(directory)/hostile.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: SafetensorsError.self) { try SafetensorsFile.read(path: path) }
        #expect(error.path == path)
        #expect(error.description.hasPrefix(path), "the message starts with the file")
        // The in-memory decoder reaches the same verdict.
        #expect(throws: error) { try SafetensorsFile.decode(bytes, path: path) }
        return error
    }
}

private let eightFloatBytes = [UInt8](repeating: 0, count: 8)

@Suite("Hostile safetensors files")
struct HostileFileTests {
    @Test("a file shorter than the 8-byte length")
    func tooShort() throws {
        let error = try rejection([1, 2, 3])
        guard case .truncatedHeaderLength(_, 3) = error else { Issue.record("got \(error)"); return }
    }

    @Test("a huge header length (2⁶³) is refused before any allocation")
    func hugeHeaderLength() throws {
        let error = try rejection(file(header: Array("{}".utf8), declaredLength: 1 << 63))
        guard case .headerTooLarge(_, 1 << 63, SafetensorsFile.maximumHeaderByteCount) = error else { Issue.record("got \(error)"); return }
        #expect(error.description.contains("9223372036854775808"))
    }

    @Test("a header length past the end of the file")
    func headerPastEnd() throws {
        let error = try rejection(file(header: Array("{}".utf8), declaredLength: 1000))
        guard case .headerPastEndOfFile(_, 1000, 2) = error else { Issue.record("got \(error)"); return }
        #expect(error.description.contains("1000") && error.description.contains("2 bytes"))
    }

    @Test("a header that is not UTF-8, with the offset of the bad byte")
    func notUTF8() throws {
        let error = try rejection(file(header: Array("{\"a\":".utf8) + [0xFF, 0xFE] + Array("}".utf8)))
        guard case .headerNotUTF8(_, 13) = error else { Issue.record("got \(error)"); return }
    }

    @Test("invalid JSON", arguments: ["{\"x\": {\"dtype\": \"F32\",", "[1, 2]", "not json", ""])
    func invalidJSON(header: String) throws {
        let error = try rejection(file(json: header))
        guard case .invalidJSON = error else { Issue.record("got \(error)"); return }
    }

    @Test("an entry with a missing or mistyped field names the tensor and the field")
    func malformedEntry() throws {
        let missing = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [2]}}"#))
        guard case .malformedEntry(_, "w", let problem) = missing else { Issue.record("got \(missing)"); return }
        #expect(problem.contains("data_offsets"))
        let mistyped = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}"#,
                                          data: eightFloatBytes))
        guard case .malformedEntry(_, "w", let problem) = mistyped else { Issue.record("got \(mistyped)"); return }
        #expect(problem.contains("shape"))
        let negative = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#,
                                          data: eightFloatBytes))
        guard case .malformedEntry(_, "w", _) = negative else { Issue.record("got \(negative)"); return }
        let reversed = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}"#,
                                          data: eightFloatBytes))
        guard case .malformedEntry(_, "w", _) = reversed else { Issue.record("got \(reversed)"); return }
    }

    @Test("an unknown dtype names the tensor, the dtype and what is supported")
    func unknownDType() throws {
        let error = try rejection(file(json: #"{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 8]}}"#,
                                       data: eightFloatBytes))
        #expect(error == .unsupportedDType(path: error.path, tensor: "w", dtype: "F128",
                                           supported: ["F64", "F32", "F16", "BF16", "I64", "I32", "U8"]))
    }

    @Test("a byte span that does not match dtype × shape gives expected and found byte counts")
    func sizeMismatch() throws {
        let error = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
                                       data: eightFloatBytes))
        #expect(error == .sizeMismatch(path: error.path, tensor: "w", dtype: "F32", shape: [3], expectedByteCount: 12,
                                       foundByteCount: 8))
    }

    @Test("a shape whose byte count overflows Int is a size mismatch, not a crash or an allocation")
    func overflowingShape() throws {
        let error = try rejection(file(json: #"{"w": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}"#,
                                       data: eightFloatBytes))
        guard case .sizeMismatch(_, "w", "F64", _, Int.max, 8) = error else { Issue.record("got \(error)"); return }
    }

    @Test("offsets past the data section")
    func offsetsOutOfRange() throws {
        let error = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#,
                                       data: eightFloatBytes))
        #expect(error == .offsetsOutOfRange(path: error.path, tensor: "w", begin: 0, end: 16, dataByteCount: 8))
        let huge = try rejection(file(json: #"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [9223372036854775800, 9223372036854775804]}}"#,
                                      data: eightFloatBytes))
        guard case .offsetsOutOfRange(_, "w", _, _, 8) = huge else { Issue.record("got \(huge)"); return }
    }

    @Test("two tensors sharing bytes")
    func overlapping() throws {
        let error = try rejection(file(json: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
                                       data: eightFloatBytes))
        #expect(error == .overlappingTensors(path: error.path, tensor: "b", range: 4..<8, other: "a", otherRange: 0..<8))
    }

    @Test("bytes no tensor owns: a gap between tensors and trailing bytes")
    func notCovering() throws {
        let gap = try rejection(file(json: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#,
                                     data: [UInt8](repeating: 0, count: 12)))
        #expect(gap == .uncoveredBytes(path: gap.path, range: 4..<8, dataByteCount: 12))
        let trailing = try rejection(file(json: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
                                          data: eightFloatBytes))
        #expect(trailing == .uncoveredBytes(path: trailing.path, range: 4..<8, dataByteCount: 8))
    }

    @Test("a name given twice cannot smuggle in a second tensor: the bytes only one entry can own are refused")
    func duplicateName() throws {
        let error = try rejection(file(json: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
                                       data: eightFloatBytes))
        guard case .uncoveredBytes(_, _, 8) = error else { Issue.record("got \(error)"); return }
    }

    @Test("a missing file is an error naming it")
    func missingFile() throws {
        let error = try #require(throws: SafetensorsError.self) { try SafetensorsFile.read(path: "/nonexistent/x.safetensors") }
        guard case .unreadable("/nonexistent/x.safetensors", _) = error else { Issue.record("got \(error)"); return }
    }

    @Test("a failed write names the file once, then the failing step and the system's reason")
    func unwritableFile() throws {
        let path = "/nonexistent/x.safetensors"
        let error = try #require(throws: SafetensorsError.self) { try SafetensorsFile().write(to: path) }
        guard case .unreadable(path, let reason) = error else { Issue.record("got \(error)"); return }
        #expect(reason.hasPrefix("cannot create /nonexistent/.x.safetensors.tmp-"))
        #expect(error.description.components(separatedBy: path).count == 2, "\(error.description)")
    }

    @Test("a well-formed file with empty and scalar tensors is accepted (the checks are not over-strict)")
    func edgeCasesAccepted() throws {
        let bytes = file(json: #"{"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}}   "#,
                         data: [5, 0, 0, 0, 0, 0, 0, 0])
        let decoded = try SafetensorsFile.decode(bytes, path: "memory")
        #expect(decoded.tensors["e"]?.shape == [0] && decoded.tensors["s"]?.integers == [5] && decoded.metadata == ["k": "v"])
    }
}
