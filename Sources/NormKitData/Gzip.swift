import CZlib

/// Why `_inflateGzip(_:)` could not produce the uncompressed bytes.
enum _InflateError: Error, Sendable, Equatable {
    /// zlib rejected the stream; the payload is zlib's own message (for example
    /// "incorrect data check" when the CRC-32 trailer does not match) and the
    /// byte offset at which the failing member starts (0 for the first; after a
    /// complete member, whatever follows it is read as the next one).
    case corrupt(zlibMessage: String, memberOffset: Int)
    /// The input ended before the last member's end-of-stream marker and trailer.
    case truncated(compressedByteCount: Int, inflatedByteCount: Int)
}

/// The two bytes every gzip member starts with (RFC 1952, section 2.3.1).
let _gzipMagic: (UInt8, UInt8) = (0x1f, 0x8b)

/// Whether `bytes` starts like a gzip member (0x1f 0x8b).
func _looksLikeGzip(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 2 && bytes[0] == _gzipMagic.0 && bytes[1] == _gzipMagic.1
}

/// Inflates a whole gzip (RFC 1952) or zlib (RFC 1950) buffer.
///
/// zlib detects which of the two headers is present (`windowBits` 15 + 32) and
/// checks the CRC-32 / Adler-32 trailer. Concatenated gzip members, as written by
/// `cat a.gz b.gz` or by parallel compressors, are inflated one after another and
/// their outputs joined, like `gzip -d` does. Anything after a member that is not
/// itself a valid member (even zero padding) is reported as corruption.
///
/// - Parameter compressed: the complete compressed file.
/// - Returns: the uncompressed bytes of all members, in order.
/// - Throws: `_InflateError.corrupt` with zlib's message when the data is invalid,
///   `_InflateError.truncated` when the input ends inside a member.
func _inflateGzip(_ compressed: [UInt8]) throws(_InflateError) -> [UInt8] {
    var stream = z_stream()
    // windowBits 15 (the largest window) + 32 (detect gzip or zlib header). The
    // `inflateInit2` macro is not imported into Swift, so call what it expands to.
    let initStatus = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    guard initStatus == Z_OK else {
        throw .corrupt(zlibMessage: _zlibMessage(for: stream, status: initStatus), memberOffset: 0)
    }
    defer { inflateEnd(&stream) }

    var output = [UInt8](repeating: 0, count: _initialOutputCapacity(for: compressed))
    var consumed = 0
    var produced = 0
    var memberOffset = 0

    try compressed.withUnsafeBufferPointer { (input) throws(_InflateError) in
        // zlib counts bytes in 32-bit `uInt`s, so feed and drain at most that much per call.
        let largestChunk = Int(UInt32.max)
        while true {
            if produced == output.count {
                output.append(contentsOf: repeatElement(0, count: max(output.count, 1 << 16)))
            }
            let inputChunk = min(input.count - consumed, largestChunk)
            let status = output.withUnsafeMutableBufferPointer { (outputBuffer) -> Int32 in
                let outputChunk = min(outputBuffer.count - produced, largestChunk)
                // zlib never writes through `next_in`; the header simply lacks `const`.
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + consumed)
                stream.avail_in = UInt32(inputChunk)
                stream.next_out = outputBuffer.baseAddress! + produced
                stream.avail_out = UInt32(outputChunk)
                let status = inflate(&stream, Z_NO_FLUSH)
                consumed += inputChunk - Int(stream.avail_in)
                produced += outputChunk - Int(stream.avail_out)
                return status
            }
            switch status {
            case Z_STREAM_END:
                if consumed == input.count { return }
                // Another member follows; start it with a fresh header check.
                memberOffset = consumed
                inflateReset(&stream)
            case Z_OK:
                continue
            case Z_BUF_ERROR where produced < output.count:
                // No progress with room left to write: the input ran out mid-member.
                throw .truncated(compressedByteCount: input.count, inflatedByteCount: produced)
            case Z_BUF_ERROR:
                continue  // Output full; the top of the loop grows it.
            default:
                throw .corrupt(zlibMessage: _zlibMessage(for: stream, status: status), memberOffset: memberOffset)
            }
        }
    }
    output.removeLast(output.count - produced)
    return output
}

/// A first guess at the uncompressed size, so a typical file inflates without regrowing.
///
/// A gzip file ends with ISIZE, the last member's uncompressed size modulo 2^32
/// (little-endian). It is only a hint: it may be corrupt, belong to one of several
/// members, or the buffer may be zlib rather than gzip. Deflate cannot expand by
/// more than about 1032:1, so a larger claim is ignored.
private func _initialOutputCapacity(for compressed: [UInt8]) -> Int {
    let fallback = max(4 * compressed.count, 1 << 16)
    guard _looksLikeGzip(compressed), compressed.count >= 18 else { return fallback }
    let trailer = compressed.suffix(4)
    let claimedSize = trailer.reversed().reduce(0) { ($0 << 8) | Int($1) }
    guard claimedSize > 0, claimedSize <= 1032 * compressed.count else { return fallback }
    return claimedSize
}

/// zlib's message for the last failure, or its generic text for `status` when it set none.
private func _zlibMessage(for stream: z_stream, status: Int32) -> String {
    if let message = stream.msg {
        return String(cString: message)
    }
    return String(cString: zError(status))
}
