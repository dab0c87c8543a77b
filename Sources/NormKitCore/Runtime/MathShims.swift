#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// libm entry points under names that do not clash with Swift's own functions.
@inline(__always) @usableFromInline func _log(_ x: Double) -> Double { log(x) }
@inline(__always) @usableFromInline func _cos(_ x: Double) -> Double { cos(x) }
@inline(__always) @usableFromInline func _exp(_ x: Float) -> Float { expf(x) }
@inline(__always) @usableFromInline func _log(_ x: Float) -> Float { logf(x) }
@inline(__always) @usableFromInline func _tanh(_ x: Float) -> Float { tanhf(x) }
@inline(__always) @usableFromInline func _exp(_ x: Double) -> Double { exp(x) }
