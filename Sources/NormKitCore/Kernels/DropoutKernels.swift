// Inverted dropout: in training each value is kept with probability 1 − p and
// scaled by 1/(1 − p), so the expected output equals the input and inference
// needs no rescaling (Srivastava et al. 2014, as PyTorch and Keras implement it).

/// Draws a keep-mask: `keep[i]` is 1 with probability 1 − `probability`, else 0, in index order
/// from `generator` (one draw per value, so a seed fixes the mask).
public func dropoutMask(count: Int, probability: Float, generator: inout SeededGenerator,
                        keep: UnsafeMutablePointer<UInt8>) {
    for i in 0..<count { keep[i] = generator.nextUnitFloat() >= probability ? 1 : 0 }
}

/// The factor kept values are multiplied by: 1/(1 − p), or 0 when p = 1 (everything dropped).
public func dropoutScale(probability: Float) -> Float {
    probability >= 1 ? 0 : 1 / (1 - probability)
}

/// Dropout forward: y = x·scale where kept, 0 where dropped.
///
/// - Parameters:
///   - input, output: `count` values each.
///   - keep: `count` entries, 1 = kept.
///   - scale: `dropoutScale(probability:)`.
public func dropoutForward(input: UnsafePointer<Float>, keep: UnsafePointer<UInt8>, count: Int, scale: Float,
                           output: UnsafeMutablePointer<Float>) {
    for i in 0..<count { output[i] = keep[i] != 0 ? input[i] * scale : 0 }
}

/// Dropout backward: dx = dy·scale where kept, 0 where dropped (the same map as forward:
/// dropout is linear in x for a fixed mask).
public func dropoutBackward(outputGradient: UnsafePointer<Float>, keep: UnsafePointer<UInt8>, count: Int, scale: Float,
                            inputGradient: UnsafeMutablePointer<Float>) {
    dropoutForward(input: outputGradient, keep: keep, count: count, scale: scale, output: inputGradient)
}
