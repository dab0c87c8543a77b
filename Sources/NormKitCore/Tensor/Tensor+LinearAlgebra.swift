extension Tensor {
    /// The matrix product of two rank-2 tensors: (m, k) · (k, n) → (m, n).
    public func matmul(_ other: Tensor) -> Tensor {
        precondition(rank == 2 && other.rank == 2 && shape[1] == other.shape[0],
                     "matmul needs (m, k) · (k, n), got \(shape) · \(other.shape)")
        let (m, k, n) = (shape[0], shape[1], other.shape[1])
        var result = Tensor.product(self, transposed: false, other, transposed: false, m: m, n: n, k: k)
        let a = detached(), b = other.detached()
        result.record("matmul", inputs: [self, other]) { g in
            // dA = g · Bᵀ (m, k); dB = Aᵀ · g (k, n)
            [Tensor.product(g, transposed: false, b, transposed: true, m: m, n: k, k: n),
             Tensor.product(a, transposed: true, g, transposed: false, m: k, n: n, k: m)]
        }
        return result
    }

    /// The transpose of a rank-2 tensor, copied.
    public func transposed() -> Tensor {
        precondition(rank == 2, "transposed() needs a rank-2 tensor, shape is \(shape)")
        let (rows, columns) = (shape[0], shape[1])
        var result = Tensor(shape: [columns, rows]) { out in
            withUnsafeBufferPointer { x in
                for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = x[r * columns + c] } }
            }
        }
        result.record("transpose", inputs: [self]) { g in [g.transposed()] }
        return result
    }

    /// op(a) · op(b) through `sgemm`, where op transposes when asked; no recording.
    static func product(_ a: Tensor, transposed transposeA: Bool, _ b: Tensor, transposed transposeB: Bool,
                        m: Int, n: Int, k: Int) -> Tensor {
        Tensor(shape: [m, n]) { out in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                          a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                          c: out.baseAddress!, ldc: n)
                }
            }
        }
    }
}

/// A fully connected layer's map, y = x · Wᵀ + b, as one autodiff node.
///
/// Shapes: `input` (batch, inFeatures); `weight` (outFeatures, inFeatures), the
/// PyTorch layout; `bias` (outFeatures) or nil. Result (batch, outFeatures).
/// The pullback is two products and a column sum: dx = g · W, dW = gᵀ · x, db = Σ_batch g
/// (`linearInputGradient`, `linearWeightGradient`).
public func linear(_ input: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(input.rank == 2 && weight.rank == 2 && input.shape[1] == weight.shape[1],
                 "linear: input \(input.shape) does not match weight \(weight.shape) (expected input (batch, \(weight.rank == 2 ? weight.shape[1] : -1)))")
    let (batch, inFeatures, outFeatures) = (input.shape[0], input.shape[1], weight.shape[0])
    if let bias { precondition(bias.shape == [outFeatures], "linear: bias \(bias.shape) does not match weight \(weight.shape)") }
    // The products go through `linearForward` & co.: small batches (training steps)
    // take the unpacked single-thread kernels, large ones `sgemm`.
    var result = Tensor(shape: [batch, outFeatures]) { out in
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                func run(_ b: UnsafePointer<Float>?) {
                    linearForward(input: x.baseAddress!, rows: batch, inFeatures: inFeatures, weight: w.baseAddress!,
                                  outFeatures: outFeatures, bias: b, output: out.baseAddress!)
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        }
    }
    let x = input.detached(), w = weight.detached()
    let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
    let hasBias = bias != nil
    let wantsInputGradient = input.requiresGradient
    result.record("linear", inputs: inputs) { g in
        let dInput = !wantsInputGradient ? nil : Tensor(shape: [batch, inFeatures]) { dx in
            g.withUnsafeBufferPointer { dy in
                w.withUnsafeBufferPointer { w in
                    linearInputGradient(outputGradient: dy.baseAddress!, weight: w.baseAddress!, rows: batch,
                                        inFeatures: inFeatures, outFeatures: outFeatures, inputGradient: dx.baseAddress!)
                }
            }
        }
        let dWeight = Tensor(shape: [outFeatures, inFeatures]) { dW in
            g.withUnsafeBufferPointer { dy in
                x.withUnsafeBufferPointer { x in
                    linearWeightGradient(outputGradient: dy.baseAddress!, input: x.baseAddress!, rows: batch,
                                         inFeatures: inFeatures, outFeatures: outFeatures, weightGradient: dW.baseAddress!)
                }
            }
        }
        var gradients: [Tensor?] = [dInput, dWeight]
        if hasBias { gradients.append(g.summed(toShape: [outFeatures])) }
        return gradients
    }
    return result
}
