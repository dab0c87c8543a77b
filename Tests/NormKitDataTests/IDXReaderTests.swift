import Foundation
import NormKitData
import Testing

@Suite("IDXReader reads well-formed files")
struct IDXReaderReadingTests {
    @Test("a plain file and its gzip-compressed copy decode to the same shape and bytes")
    func plainAndGzipAgree() throws {
        let scratch = try ScratchDirectory()
        let elements = patternedBytes(count: 5 * 4 * 3)
        let plain = idxFile(dimensions: [5, 4, 3], elements: elements)
        let plainPath = try scratch.write(plain, to: "images-idx3-ubyte")
        let gzipPath = try scratch.write(gzipCompressed(plain), to: "images-idx3-ubyte.gz")

        let fromPlain = try IDXReader.read(path: plainPath, expectedRank: 3)
        let fromGzip = try IDXReader.read(path: gzipPath, expectedRank: 3)

        #expect(fromPlain.dimensions == [5, 4, 3])
        #expect(fromPlain.elements == elements)
        #expect(fromGzip == fromPlain)
    }

    @Test("any rank from 1 to 4 is accepted when no rank is asked for")
    func acceptsEveryRankUpToFour() throws {
        let scratch = try ScratchDirectory()
        for dimensions in [[7], [2, 3], [2, 1, 3], [1, 2, 2, 2]] {
            let elements = patternedBytes(count: dimensions.reduce(1, *))
            let file = idxFile(dimensions: dimensions, elements: elements)
            let path = try scratch.write(file, to: "rank\(dimensions.count)")
            let array = try IDXReader.read(path: path)
            #expect(array.dimensions == dimensions)
            #expect(array.elements == elements)
        }
    }

    @Test("a zero-sized dimension is an empty array, not an error")
    func acceptsEmptyArray() throws {
        let scratch = try ScratchDirectory()
        let path = try scratch.write(idxFile(dimensions: [0, 28, 28], elements: []), to: "empty")
        let array = try IDXReader.read(path: path, expectedRank: 3)
        #expect(array.dimensions == [0, 28, 28])
        #expect(array.elements.isEmpty)
    }

    @Test("concatenated gzip members inflate to their joined contents, like gzip -d")
    func concatenatedGzipMembers() throws {
        let scratch = try ScratchDirectory()
        let elements = patternedBytes(count: 2 * 50)
        let plain = idxFile(dimensions: [2, 50], elements: elements)
        let split = 37
        let twoMembers = gzipCompressed(Array(plain[..<split])) + gzipCompressed(Array(plain[split...]))
        let path = try scratch.write(twoMembers, to: "two-members.gz")

        let array = try IDXReader.read(path: path)

        #expect(array.dimensions == [2, 50])
        #expect(array.elements == elements)
    }

    @Test("a file larger than the first output guess still inflates completely")
    func largeGzipFile() throws {
        let scratch = try ScratchDirectory()
        // Highly compressible, so the output outgrows any guess based on the input size.
        let elements = [UInt8](repeating: 7, count: 300 * 28 * 28)
        let compressed = gzipCompressed(idxFile(dimensions: [300, 28, 28], elements: elements))
        // Two members, so the ISIZE trailer describes only the second and undersizes the output.
        let path = try scratch.write(compressed + gzipCompressed([]), to: "large.gz")

        let array = try IDXReader.read(path: path, expectedRank: 3)

        #expect(array.elements == elements)
    }

    @Test("decode reads bytes already in memory, gzip or plain")
    func decodeFromMemory() throws {
        let plain = idxFile(dimensions: [3], elements: [9, 8, 7])
        #expect(try IDXReader.decode(plain, path: "memory").elements == [9, 8, 7])
        #expect(try IDXReader.decode(gzipCompressed(plain), path: "memory.gz").elements == [9, 8, 7])
    }
}

@Suite("IDXReader rejects malformed files with an error naming the file")
struct IDXReaderMalformedFileTests {
    /// What reading a malformed file produced: the error (nil if none was thrown) and the file's path.
    private struct Rejection {
        let error: IDXError?
        let path: String
    }

    /// Writes `bytes` to a file called `name`, reads it expecting an `IDXError`, and
    /// checks that the error names the file.
    private func reject(
        _ bytes: [UInt8], name: String, expectedRank: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Rejection {
        let scratch = try ScratchDirectory()
        let path = try scratch.write(bytes, to: name)
        let error = #expect(throws: IDXError.self, sourceLocation: sourceLocation) {
            try IDXReader.read(path: path, expectedRank: expectedRank)
        }
        if let error {
            #expect(error.path == path, sourceLocation: sourceLocation)
            #expect(
                error.description.contains(name), "description: \(error.description)", sourceLocation: sourceLocation
            )
        }
        return Rejection(error: error, path: path)
    }

    @Test("a missing file is fileNotFound")
    func missingFile() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("no-such-file-idx1-ubyte")
        let error = #expect(throws: IDXError.self) { try IDXReader.read(path: path) }
        #expect(error == .fileNotFound(path: path))
        #expect(error?.description == "\(path): no such file")
    }

    @Test("a directory is unreadable, with the system's reason")
    func directoryIsUnreadable() throws {
        let scratch = try ScratchDirectory()
        let error = #expect(throws: IDXError.self) { try IDXReader.read(path: scratch.url.path) }
        guard case .unreadable(let path, let reason)? = error else {
            Issue.record("expected .unreadable, got \(String(describing: error))")
            return
        }
        #expect(path == scratch.url.path)
        #expect(!reason.isEmpty)
        #expect(error?.description.contains(scratch.url.path) == true)
    }

    @Test("a file that is not IDX is wrongMagic, with the bytes found in hex")
    func wrongMagic() throws {
        let rejection = try reject(Array("PK\u{3}\u{4}rest".utf8), name: "archive.zip", expectedRank: 3)
        guard case .wrongMagic(_, let found, let expectedRank)? = rejection.error else {
            Issue.record("expected .wrongMagic, got \(String(describing: rejection.error))")
            return
        }
        #expect(found == 0x504B_0304)
        #expect(expectedRank == 3)
        #expect(rejection.error?.description.contains("expected 0x00000803, found 0x504B0304") == true)
    }

    @Test("a labels file where images were asked for is wrongMagic naming both magic numbers")
    func wrongRank() throws {
        let labels = idxFile(dimensions: [3], elements: [1, 2, 3])
        let rejection = try reject(labels, name: "train-labels-idx1-ubyte", expectedRank: 3)
        guard case .wrongMagic(_, let found, let expectedRank)? = rejection.error else {
            Issue.record("expected .wrongMagic, got \(String(describing: rejection.error))")
            return
        }
        #expect(found == 0x0000_0801)
        #expect(expectedRank == 3)
        #expect(rejection.error?.description.contains("expected 0x00000803, found 0x00000801") == true)
    }

    @Test("an element type other than unsigned byte is unsupportedElementType naming the code")
    func unsupportedType() throws {
        let floats = idxFile(typeCode: 0x0D, dimensions: [1], payload: [0, 0, 0x80, 0x3F])
        let rejection = try reject(floats, name: "floats-idx1", expectedRank: 1)
        #expect(rejection.error == .unsupportedElementType(path: rejection.path, typeCode: 0x0D))
        #expect(rejection.error?.description.contains("0x0D") == true)
    }

    @Test("a header with zero dimensions is impossibleDimensions(.noDimensions)")
    func zeroDimensions() throws {
        let rejection = try reject([0, 0, 0x08, 0], name: "rank0")
        guard case .impossibleDimensions(_, .noDimensions)? = rejection.error else {
            Issue.record("expected .impossibleDimensions(.noDimensions), got \(String(describing: rejection.error))")
            return
        }
    }

    @Test("a header with more than four dimensions is impossibleDimensions(.tooManyDimensions)")
    func tooManyDimensions() throws {
        let rank5 = idxFile(dimensions: [1, 1, 1, 1, 1], elements: [42])
        let rejection = try reject(rank5, name: "rank5")
        guard case .impossibleDimensions(_, .tooManyDimensions(count: 5, maximum: 4))? = rejection.error else {
            Issue.record("expected .tooManyDimensions, got \(String(describing: rejection.error))")
            return
        }
    }

    @Test("dimensions whose product overflows Int are impossibleDimensions(.sizeOverflows)")
    func dimensionProductOverflows() throws {
        let huge = idxFile(dimensions: [UInt32.max, UInt32.max, UInt32.max], payload: [])
        let rejection = try reject(huge, name: "overflow-idx3")
        let side = Int(UInt32.max)
        #expect(
            rejection.error
                == .impossibleDimensions(path: rejection.path, problem: .sizeOverflows(dimensions: [side, side, side]))
        )
    }

    @Test("dimensions over the size limit are impossibleDimensions(.sizeExceedsLimit), not truncation")
    func dimensionProductExceedsLimit() throws {
        let tooBig = idxFile(dimensions: [100_000, 1000, 1000], payload: [])
        let rejection = try reject(tooBig, name: "too-big-idx3")
        guard case .impossibleDimensions(_, .sizeExceedsLimit(let dimensions, let elementCount, let limit))?
            = rejection.error
        else {
            Issue.record("expected .impossibleDimensions(.sizeExceedsLimit), got \(String(describing: rejection.error))")
            return
        }
        #expect(dimensions == [100_000, 1000, 1000])
        #expect(elementCount == 100_000_000_000)
        #expect(limit == IDXReader.maximumElementCount)
    }

    @Test("a file ending inside the magic number is truncatedHeader")
    func truncatedInMagic() throws {
        let rejection = try reject([0, 0], name: "two-bytes")
        #expect(rejection.error == .truncatedHeader(path: rejection.path, expectedByteCount: 4, foundByteCount: 2))
    }

    @Test("a file ending inside the dimensions is truncatedHeader with both byte counts")
    func truncatedInDimensions() throws {
        let full = idxFile(dimensions: [2, 2, 2], elements: patternedBytes(count: 8))
        let rejection = try reject(Array(full.prefix(10)), name: "cut-header-idx3", expectedRank: 3)
        #expect(rejection.error == .truncatedHeader(path: rejection.path, expectedByteCount: 16, foundByteCount: 10))
        #expect(rejection.error?.description.contains("needs 16 bytes") == true)
    }

    @Test("data shorter than the header says is truncatedData with expected and found counts")
    func truncatedData() throws {
        let full = idxFile(dimensions: [3, 4, 5], elements: patternedBytes(count: 60))
        let rejection = try reject(Array(full.dropLast(11)), name: "train-images-idx3-ubyte", expectedRank: 3)
        #expect(
            rejection.error == .truncatedData(
                path: rejection.path, dimensions: [3, 4, 5], expectedByteCount: 60, foundByteCount: 49, dataOffset: 16
            )
        )
        let expectedMessage = "train-images-idx3-ubyte: truncated: header says 3×4×5 = 60 bytes of data, found 49 (offset 16)"
        #expect(rejection.error?.description.hasSuffix(expectedMessage) == true)
    }

    @Test("data longer than the header says is trailingBytes, not silently ignored")
    func trailingBytes() throws {
        let full = idxFile(dimensions: [2, 3], payload: patternedBytes(count: 8))
        let rejection = try reject(full, name: "padded-idx2")
        #expect(
            rejection.error == .trailingBytes(
                path: rejection.path, dimensions: [2, 3], expectedByteCount: 6, foundByteCount: 8, dataOffset: 12
            )
        )
        #expect(rejection.error?.description.contains("2 extra bytes from offset 18") == true)
    }

    @Test("gzip whose CRC does not match is corruptGzip with zlib's message")
    func corruptGzipChecksum() throws {
        var compressed = gzipCompressed(idxFile(dimensions: [4, 4], elements: patternedBytes(count: 16)))
        // The trailer is CRC-32 then ISIZE; flip a bit of the CRC.
        compressed[compressed.count - 8] ^= 0x01
        let rejection = try reject(compressed, name: "bad-crc.gz")
        #expect(rejection.error == .corruptGzip(path: rejection.path, zlibMessage: "incorrect data check", memberOffset: 0))
    }

    @Test("gzip with an unknown compression method is corruptGzip")
    func corruptGzipHeader() throws {
        var compressed = gzipCompressed(idxFile(dimensions: [4], elements: [1, 2, 3, 4]))
        compressed[2] = 7  // CM: only 8 (deflate) exists.
        let rejection = try reject(compressed, name: "bad-method.gz")
        guard case .corruptGzip(_, let zlibMessage, 0)? = rejection.error else {
            Issue.record("expected .corruptGzip, got \(String(describing: rejection.error))")
            return
        }
        #expect(!zlibMessage.isEmpty)
        #expect(rejection.error?.description.contains(zlibMessage) == true)
    }

    @Test("gzip followed by bytes that are not another member is corruptGzip at the member's end")
    func garbageAfterGzipMember() throws {
        let compressed = gzipCompressed(idxFile(dimensions: [4], elements: [1, 2, 3, 4]))
        let rejection = try reject(compressed + [0x42, 0x42, 0x42], name: "junk-after.gz")
        guard case .corruptGzip(_, _, let memberOffset)? = rejection.error else {
            Issue.record("expected .corruptGzip, got \(String(describing: rejection.error))")
            return
        }
        #expect(memberOffset == compressed.count)
        #expect(rejection.error?.description.contains("from byte \(compressed.count), after a complete gzip member") == true)
    }

    @Test("a corrupt second member is reported from the first one's end")
    func corruptSecondMember() throws {
        let first = gzipCompressed(idxFile(dimensions: [4], elements: [1, 2, 3, 4]))
        var second = gzipCompressed([5, 6, 7, 8])
        second[second.count - 8] ^= 0x01  // the second member's CRC-32
        let rejection = try reject(first + second, name: "bad-second.gz")
        #expect(rejection.error == .corruptGzip(path: rejection.path, zlibMessage: "incorrect data check",
                                                memberOffset: first.count))
    }

    @Test("gzip cut short is truncatedGzip, wherever the cut falls")
    func truncatedGzip() throws {
        let compressed = gzipCompressed(idxFile(dimensions: [20, 20], elements: patternedBytes(count: 400)))
        for keptByteCount in [2, 10, compressed.count / 2, compressed.count - 4, compressed.count - 1] {
            let rejection = try reject(Array(compressed.prefix(keptByteCount)), name: "cut-\(keptByteCount).gz")
            guard case .truncatedGzip(_, let compressedByteCount, _)? = rejection.error else {
                Issue.record("cut at \(keptByteCount): not .truncatedGzip but \(String(describing: rejection.error))")
                continue
            }
            #expect(compressedByteCount == keptByteCount)
        }
    }
}
