// Dropout as one autodiff node over Kernels/DropoutKernels.swift.

/// Inverted dropout with a given keep-mask, as one autodiff node: y = x/(1 − p) where
/// `keep` is 1, 0 where it is 0. `keep` has one entry per value of `input` (any shape).
public func dropout(_ input: Tensor, keep: [UInt8], probability: Float) -> Tensor {
    precondition(probability >= 0 && probability <= 1, "dropout: probability \(probability) is outside [0, 1]")
    precondition(keep.count == input.scalarCount,
                 "dropout: a mask of \(keep.count) entries for input \(input.shape) (\(input.scalarCount) values)")
    let scale = dropoutScale(probability: probability)
    var output = Tensor(shape: input.shape) { y in
        input.withUnsafeBufferPointer { x in
            keep.withUnsafeBufferPointer { mask in
                dropoutForward(input: x.baseAddress!, keep: mask.baseAddress!, count: x.count, scale: scale,
                               output: y.baseAddress!)
            }
        }
    }
    output.record("dropout", inputs: [input]) { g in
        [Tensor(shape: g.shape) { dx in
            g.withUnsafeBufferPointer { dy in
                keep.withUnsafeBufferPointer { mask in
                    dropoutBackward(outputGradient: dy.baseAddress!, keep: mask.baseAddress!, count: dy.count,
                                    scale: scale, inputGradient: dx.baseAddress!)
                }
            }
        }]
    }
    return output
}

/// Inverted dropout with a mask drawn from `generator`: each value is zeroed with
/// probability `probability`, the others are scaled by 1/(1 − p). Training only; in
/// inference dropout is the identity (the `Dropout` layer does that).
public func dropout(_ input: Tensor, probability: Float, generator: inout SeededGenerator) -> Tensor {
    var keep = [UInt8](repeating: 0, count: input.scalarCount)
    keep.withUnsafeMutableBufferPointer { mask in
        if let base = mask.baseAddress {
            dropoutMask(count: mask.count, probability: probability, generator: &generator, keep: base)
        }
    }
    return dropout(input, keep: keep, probability: probability)
}
