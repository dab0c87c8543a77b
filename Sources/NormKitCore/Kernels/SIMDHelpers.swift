// SIMD building blocks shared by the kernels (GEMM, Linear, batch norm).
// `@inline(__always)`, so they cost nothing over writing the intrinsic in place.

/// accumulator + a·b, one fused instruction where the target has FMA. The default
/// x86-64 target has none: there `addingProduct` would call libm's `fmaf` per lane,
/// so it multiplies and adds separately.
@inline(__always)
func _fusedMultiplyAdd(_ accumulator: SIMD16<Float>, _ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    #if NativeCPU
    return accumulator.addingProduct(a, b)
    #else
    return accumulator + a * b
    #endif
}

/// accumulator + a·b for one Float, rounded as one lane of the vector version, so a
/// kernel's scalar tail gives what its vector loop would have.
@inline(__always)
func _fusedMultiplyAdd(_ accumulator: Float, _ a: Float, _ b: Float) -> Float {
    #if NativeCPU
    return accumulator.addingProduct(a, b)
    #else
    return accumulator + a * b
    #endif
}

/// q + d·d, one fused instruction where the target has FMA (the default
/// x86-64 target would call `fma` from libm per lane instead).
@inline(__always)
func _addSquare(_ q: SIMD8<Double>, _ d: SIMD8<Double>) -> SIMD8<Double> {
    #if NativeCPU
    return q.addingProduct(d, d)
    #else
    return q + d * d
    #endif
}

/// 16 floats from `p`, which need not be aligned.
@inline(__always)
func _load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

/// Stores 16 floats at `p`, which need not be aligned.
@inline(__always)
func _store16(_ value: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: value, as: SIMD16<Float>.self)
}
