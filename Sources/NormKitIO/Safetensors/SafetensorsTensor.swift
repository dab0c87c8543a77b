import NormKitCore
import NormKitNN

/// The element types NormKit reads and writes in safetensors files, spelled as in the format.
///
/// Float types load into Float32 tensors (F64 rounds to nearest, F16 and BF16
/// widen exactly); integer types load as int64 state (`num_batches_tracked`).
public enum SafetensorsDType: String, Sendable, CaseIterable, CustomStringConvertible {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", u8 = "U8"

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .u8: 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: true
        case .i64, .i32, .u8: false
        }
    }

    public var description: String { rawValue }
}

/// One tensor of a safetensors file: its element type, shape and raw
/// little-endian row-major bytes, as stored.
public struct SafetensorsTensor: Sendable, Equatable {
    public let dtype: SafetensorsDType
    /// `[]` for a scalar.
    public let shape: [Int]
    /// `shape.product × dtype.byteCount` bytes, little-endian.
    public let bytes: [UInt8]

    /// A tensor from raw bytes; `bytes.count` must be `shape.product × dtype.byteCount`.
    public init(dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        let count = shape.reduce(1, *)
        precondition(bytes.count == count * dtype.byteCount,
                     "SafetensorsTensor: \(dtype)\(shape) needs \(count * dtype.byteCount) bytes, got \(bytes.count)")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Stores `tensor`'s values as `dtype` (a float type): F32 and F64 are exact,
    /// F16 and BF16 round to nearest even, as `torch.Tensor.to` does.
    public init(_ tensor: Tensor, as dtype: SafetensorsDType = .f32) {
        precondition(dtype.isFloatingPoint, "SafetensorsTensor: a float tensor cannot be stored as \(dtype)")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tensor.scalarCount * dtype.byteCount)
        tensor.withUnsafeBufferPointer { values in
            for value in values {
                switch dtype {
                case .f32: _appendLittleEndian(value.bitPattern, to: &bytes)
                case .f64: _appendLittleEndian(Double(value).bitPattern, to: &bytes)
                case .f16: _appendLittleEndian(Float16(value).bitPattern, to: &bytes)
                case .bf16: _appendLittleEndian(_bfloat16Bits(value), to: &bytes)
                case .i64, .i32, .u8: fatalError("unreachable: checked above")
                }
            }
        }
        self.init(dtype: dtype, shape: tensor.shape, bytes: bytes)
    }

    /// Stores integers as I64.
    public init(int64 values: [Int64], shape: [Int]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 8)
        for value in values { _appendLittleEndian(UInt64(bitPattern: value), to: &bytes) }
        self.init(dtype: .i64, shape: shape, bytes: bytes)
    }

    /// A state-dict entry: floats as Float32 with I64 as `.integer` and the other integer types too.
    public init(_ value: StateValue, floatType: SafetensorsDType = .f32) {
        switch value {
        case .float(let tensor): self.init(tensor, as: floatType)
        case .integer(let values, let shape): self.init(int64: values, shape: shape)
        }
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The values converted to Float32 (integers exactly up to 2²⁴).
    public var floats: [Float] {
        (0..<elementCount).map { index in
            let offset = index * dtype.byteCount
            switch dtype {
            case .f32: return Float(bitPattern: _readLittleEndian(bytes, at: offset))
            case .f64: return Float(Double(bitPattern: _readLittleEndian(bytes, at: offset)))
            case .f16: return Float(Float16(bitPattern: _readLittleEndian(bytes, at: offset)))
            case .bf16: return Float(bitPattern: UInt32(_readLittleEndian(bytes, at: offset) as UInt16) << 16)
            case .i64, .i32, .u8: return Float(integer(at: offset))
            }
        }
    }

    /// The values as int64, or nil for a float type.
    public var integers: [Int64]? {
        guard !dtype.isFloatingPoint else { return nil }
        return (0..<elementCount).map { integer(at: $0 * dtype.byteCount) }
    }

    private func integer(at offset: Int) -> Int64 {
        switch dtype {
        case .i64: Int64(bitPattern: _readLittleEndian(bytes, at: offset))
        case .i32: Int64(Int32(bitPattern: _readLittleEndian(bytes, at: offset)))
        case .u8: Int64(bytes[offset])
        case .f64, .f32, .f16, .bf16: preconditionFailure("integer(at:) on \(dtype)")
        }
    }

    /// The tensor as a state-dict entry: float types as a Float32 tensor, integer types as int64.
    public var stateValue: StateValue {
        if let integers { return .integer(integers, shape: shape) }
        return .float(Tensor(floats, shape: shape))
    }
}

/// BF16 is Float32's upper half; round to nearest even on the dropped 16 bits,
/// keeping NaNs NaN (a carry could otherwise turn a NaN payload into ∞).
func _bfloat16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(bits >> 16) | 0x0040 }
    let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
    return UInt16((bits &+ roundingBias) >> 16)
}

func _appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

func _readLittleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int) -> T {
    var value: T = 0
    for index in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + index]) << (8 * index) }
    return value
}
