// Runs of consecutive channels for the channels-last kernels.
//
// A channels-last row is `channels` floats, one per channel, and every kernel
// does the same per-channel arithmetic across it. The kernels are written once,
// generic over how many channels they take at a time (`_ChannelRun`), and
// called with 64 (`_Floats64`, four AVX-512 registers) or 32 (`_Floats32`),
// then 16 (`SIMD16<Float>`), then 1 (`Float`) for the ragged end of the row.
//
// Why 64 at a time: the per-channel constants of a 64-channel run then stay in
// registers while the run is applied to several rows. Loading them from L1 for
// every row measured 1.4× slower on (64·56·56, 64) channels-last — the extra
// loads cut the memory reads in flight — and `SIMD64<Float>` compiles to
// per-lane code, 70× slower.

/// `width` consecutive channels' Floats, with the arithmetic the kernels use.
protocol _ChannelRun {
    /// The same channels in Double (the kernels' sums).
    associatedtype Sums: _ChannelSums
    static var width: Int { get }
    init(_ p: UnsafePointer<Float>)
    func store(to p: UnsafeMutablePointer<Float>)
    static func - (a: Self, b: Self) -> Self
    static func * (a: Self, b: Self) -> Self
    /// self + a·b, rounded once where the target has FMA (as `_fusedMultiplyAdd`).
    func adding(_ a: Self, times b: Self) -> Self
    /// Every lane converted to Double (exact).
    var inDouble: Sums { get }
}

/// `width` consecutive channels' Doubles.
protocol _ChannelSums {
    init(_ p: UnsafePointer<Double>)
    func store(to p: UnsafeMutablePointer<Double>)
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    /// self + d·d, rounded once where the target has FMA.
    func addingSquare(_ d: Self) -> Self
}

// MARK: - 1 channel

extension Float: _ChannelRun {
    static var width: Int { 1 }
    @inline(__always) init(_ p: UnsafePointer<Float>) { self = p.pointee }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { p.pointee = self }
    @inline(__always) func adding(_ a: Float, times b: Float) -> Float { _fusedMultiplyAdd(self, a, b) }
    @inline(__always) var inDouble: Double { Double(self) }
}

extension Double: _ChannelSums {
    @inline(__always) init(_ p: UnsafePointer<Double>) { self = p.pointee }
    @inline(__always) func store(to p: UnsafeMutablePointer<Double>) { p.pointee = self }
    @inline(__always) func addingSquare(_ d: Double) -> Double {
        #if NativeCPU
        return addingProduct(d, d)
        #else
        return self + d * d
        #endif
    }
}

// MARK: - 16 channels

extension SIMD16: _ChannelRun where Scalar == Float {
    static var width: Int { 16 }
    @inline(__always) init(_ p: UnsafePointer<Float>) { self = _load16(p) }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { _store16(self, p) }
    @inline(__always) func adding(_ a: Self, times b: Self) -> Self { _fusedMultiplyAdd(self, a, b) }
    @inline(__always) var inDouble: _Doubles16 { _Doubles16(low: SIMD8(lowHalf), high: SIMD8(highHalf)) }
}

/// 16 Doubles as two AVX-512 registers.
struct _Doubles16: _ChannelSums {
    var low, high: SIMD8<Double>
    @inline(__always) init(low: SIMD8<Double>, high: SIMD8<Double>) { (self.low, self.high) = (low, high) }
    @inline(__always) init(_ p: UnsafePointer<Double>) {
        low = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Double>.self)
        high = UnsafeRawPointer(p + 8).loadUnaligned(as: SIMD8<Double>.self)
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: low, as: SIMD8<Double>.self)
        UnsafeMutableRawPointer(p + 8).storeBytes(of: high, as: SIMD8<Double>.self)
    }
    @inline(__always) static func + (a: Self, b: Self) -> Self { Self(low: a.low + b.low, high: a.high + b.high) }
    @inline(__always) static func - (a: Self, b: Self) -> Self { Self(low: a.low - b.low, high: a.high - b.high) }
    @inline(__always) func addingSquare(_ d: Self) -> Self {
        Self(low: _addSquare(low, d.low), high: _addSquare(high, d.high))
    }
}

// MARK: - 32 channels

/// 32 Floats as two AVX-512 registers.
struct _Floats32: _ChannelRun {
    var v0, v1: SIMD16<Float>
    static var width: Int { 32 }
    @inline(__always) init(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>) { (self.v0, self.v1) = (v0, v1) }
    @inline(__always) init(_ p: UnsafePointer<Float>) { self.init(_load16(p), _load16(p + 16)) }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) { _store16(v0, p); _store16(v1, p + 16) }
    @inline(__always) static func - (a: Self, b: Self) -> Self { Self(a.v0 - b.v0, a.v1 - b.v1) }
    @inline(__always) static func * (a: Self, b: Self) -> Self { Self(a.v0 * b.v0, a.v1 * b.v1) }
    @inline(__always) func adding(_ a: Self, times b: Self) -> Self {
        Self(_fusedMultiplyAdd(v0, a.v0, b.v0), _fusedMultiplyAdd(v1, a.v1, b.v1))
    }
    @inline(__always) var inDouble: _Doubles32 { _Doubles32(v0.inDouble, v1.inDouble) }
}

/// 32 Doubles as four AVX-512 registers.
struct _Doubles32: _ChannelSums {
    var d0, d1: _Doubles16
    @inline(__always) init(_ d0: _Doubles16, _ d1: _Doubles16) { (self.d0, self.d1) = (d0, d1) }
    @inline(__always) init(_ p: UnsafePointer<Double>) { self.init(_Doubles16(p), _Doubles16(p + 16)) }
    @inline(__always) func store(to p: UnsafeMutablePointer<Double>) { d0.store(to: p); d1.store(to: p + 16) }
    @inline(__always) static func + (a: Self, b: Self) -> Self { Self(a.d0 + b.d0, a.d1 + b.d1) }
    @inline(__always) static func - (a: Self, b: Self) -> Self { Self(a.d0 - b.d0, a.d1 - b.d1) }
    @inline(__always) func addingSquare(_ d: Self) -> Self { Self(d0.addingSquare(d.d0), d1.addingSquare(d.d1)) }
}

// MARK: - 64 channels

/// 64 Floats as four AVX-512 registers.
struct _Floats64: _ChannelRun {
    var v0, v1, v2, v3: SIMD16<Float>
    static var width: Int { 64 }
    @inline(__always) init(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>, _ v3: SIMD16<Float>) {
        (self.v0, self.v1, self.v2, self.v3) = (v0, v1, v2, v3)
    }
    @inline(__always) init(_ p: UnsafePointer<Float>) {
        self.init(_load16(p), _load16(p + 16), _load16(p + 32), _load16(p + 48))
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>) {
        _store16(v0, p); _store16(v1, p + 16); _store16(v2, p + 32); _store16(v3, p + 48)
    }
    @inline(__always) static func - (a: Self, b: Self) -> Self {
        Self(a.v0 - b.v0, a.v1 - b.v1, a.v2 - b.v2, a.v3 - b.v3)
    }
    @inline(__always) static func * (a: Self, b: Self) -> Self {
        Self(a.v0 * b.v0, a.v1 * b.v1, a.v2 * b.v2, a.v3 * b.v3)
    }
    @inline(__always) func adding(_ a: Self, times b: Self) -> Self {
        Self(_fusedMultiplyAdd(v0, a.v0, b.v0), _fusedMultiplyAdd(v1, a.v1, b.v1),
             _fusedMultiplyAdd(v2, a.v2, b.v2), _fusedMultiplyAdd(v3, a.v3, b.v3))
    }
    @inline(__always) var inDouble: _Doubles64 { _Doubles64(v0.inDouble, v1.inDouble, v2.inDouble, v3.inDouble) }
}

/// 64 Doubles as eight AVX-512 registers.
struct _Doubles64: _ChannelSums {
    var d0, d1, d2, d3: _Doubles16
    @inline(__always) init(_ d0: _Doubles16, _ d1: _Doubles16, _ d2: _Doubles16, _ d3: _Doubles16) {
        (self.d0, self.d1, self.d2, self.d3) = (d0, d1, d2, d3)
    }
    @inline(__always) init(_ p: UnsafePointer<Double>) {
        self.init(_Doubles16(p), _Doubles16(p + 16), _Doubles16(p + 32), _Doubles16(p + 48))
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Double>) {
        d0.store(to: p); d1.store(to: p + 16); d2.store(to: p + 32); d3.store(to: p + 48)
    }
    @inline(__always) static func + (a: Self, b: Self) -> Self { Self(a.d0 + b.d0, a.d1 + b.d1, a.d2 + b.d2, a.d3 + b.d3) }
    @inline(__always) static func - (a: Self, b: Self) -> Self { Self(a.d0 - b.d0, a.d1 - b.d1, a.d2 - b.d2, a.d3 - b.d3) }
    @inline(__always) func addingSquare(_ d: Self) -> Self {
        Self(d0.addingSquare(d.d0), d1.addingSquare(d.d1), d2.addingSquare(d.d2), d3.addingSquare(d.d3))
    }
}
