// Convolution and pooling as single autodiff nodes over the kernels in
// Kernels/Conv2DKernels.swift and Kernels/PoolingKernels.swift. Layouts are
// PyTorch's: NCHW activations, (out, in/groups, kH, kW) weights.

/// 2-d convolution (cross-correlation, PyTorch's `F.conv2d`) as one autodiff node.
///
/// Shapes: `input` (N, Cin, H, W); `weight` (Cout, Cin/groups, kH, kW); `bias` (Cout) or nil;
/// result (N, Cout, oH, oW) with oH = ⌊(H + 2·padding − dilation·(kH − 1) − 1)/stride⌋ + 1 (same for W).
/// The pullback computes only the gradients whose inputs are in the graph.
public func conv2D(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Size2D = 1, padding: Size2D = 0,
                   dilation: Size2D = 1, groups: Int = 1) -> Tensor {
    precondition(input.rank == 4, "conv2D expects input (N, C, H, W), got shape \(input.shape)")
    precondition(weight.rank == 4, "conv2D expects weight (Cout, Cin/groups, kH, kW), got shape \(weight.shape)")
    precondition(groups >= 1 && input.shape[1] == weight.shape[1] * groups,
                 "conv2D: input \(input.shape) has \(input.shape[1]) channels, weight \(weight.shape) with groups \(groups) expects \(weight.shape[1] * max(groups, 1))")
    let geometry = Conv2DGeometry(
        batch: input.shape[0], inChannels: input.shape[1], outChannels: weight.shape[0],
        inputSize: Size2D(input.shape[2], input.shape[3]), kernelSize: Size2D(weight.shape[2], weight.shape[3]),
        stride: stride, padding: padding, dilation: dilation, groups: groups)
    if let bias {
        precondition(bias.shape == [weight.shape[0]], "conv2D: bias \(bias.shape) does not match weight \(weight.shape)")
    }
    var output = Tensor(shape: geometry.outputShape) { y in
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                if let bias {
                    bias.withUnsafeBufferPointer { b in
                        conv2DForward(input: x.baseAddress!, weight: w.baseAddress!, bias: b.baseAddress!,
                                      geometry: geometry, output: y.baseAddress!)
                    }
                } else {
                    conv2DForward(input: x.baseAddress!, weight: w.baseAddress!, bias: nil, geometry: geometry,
                                  output: y.baseAddress!)
                }
            }
        }
    }
    let x = input.detached(), w = weight.detached()
    let wantsInput = input.requiresGradient, wantsWeight = weight.requiresGradient
    let wantsBias = bias?.requiresGradient ?? false
    let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
    output.record("conv2D", inputs: inputs) { g in
        // Uninitialized: conv2DBackward overwrites every gradient it is given.
        var dx = wantsInput ? Tensor(shape: geometry.inputShape) { _ in } : nil
        var dw = wantsWeight ? Tensor(shape: geometry.weightShape) { _ in } : nil
        var db = wantsBias ? Tensor(shape: [geometry.outChannels]) { _ in } : nil
        x.withUnsafeBufferPointer { px in
            w.withUnsafeBufferPointer { pw in
                g.withUnsafeBufferPointer { pg in
                    _withOptionalMutablePointer(&dx) { pdx in
                        _withOptionalMutablePointer(&dw) { pdw in
                            _withOptionalMutablePointer(&db) { pdb in
                                conv2DBackward(input: px.baseAddress!, weight: pw.baseAddress!, outputGradient: pg.baseAddress!,
                                               geometry: geometry, inputGradient: pdx, weightGradient: pdw, biasGradient: pdb)
                            }
                        }
                    }
                }
            }
        }
        return inputs.count == 3 ? [dx, dw, db] : [dx, dw]
    }
    return output
}

/// Runs `body` with a mutable pointer to `tensor`'s values, or nil when there is no tensor.
@inline(__always)
func _withOptionalMutablePointer<R>(_ tensor: inout Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard tensor != nil else { return body(nil) }
    return tensor!.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// The pooling window of a rank-4 (N, C, H, W) input.
private func _poolingWindow(_ input: Tensor, kernelSize: Size2D, stride: Size2D, padding: Size2D, dilation: Size2D,
                            what: String) -> SlidingWindow {
    precondition(input.rank == 4, "\(what) expects input (N, C, H, W), got shape \(input.shape)")
    precondition(2 * padding.height <= kernelSize.height && 2 * padding.width <= kernelSize.width,
                 "\(what): padding \(padding) must be at most half the window \(kernelSize)")
    return SlidingWindow(inputSize: Size2D(input.shape[2], input.shape[3]), window: kernelSize, stride: stride,
                         padding: padding, dilation: dilation, what: "\(what) on input \(input.shape)")
}

/// 2-d max pooling (PyTorch's `F.max_pool2d`, floor mode) as one autodiff node.
///
/// Shapes: `input` (N, C, H, W) → (N, C, oH, oW); `stride` defaults to the window.
/// Padding (at most half the window) never wins. The forward keeps, per output, the
/// position it took (an Int32), and the pullback sends each gradient there.
public func maxPool2D(_ input: Tensor, kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0,
                      dilation: Size2D = 1) -> Tensor {
    let window = _poolingWindow(input, kernelSize: kernelSize, stride: stride ?? kernelSize, padding: padding,
                                dilation: dilation, what: "maxPool2D")
    let planes = input.shape[0] * input.shape[1]
    let outputShape = [input.shape[0], input.shape[1], window.outputSize.height, window.outputSize.width]
    var output = Tensor(shape: outputShape) { _ in }
    // Uninitialized: maxPool2DForward writes every index (zeroing them first was a pass over
    // 1.6 MB per step for the seed CNN's first pooling).
    let argmax = [Int32](unsafeUninitializedCapacity: output.scalarCount) { indices, initialized in
        guard let base = indices.baseAddress else { return }   // no outputs (an empty batch)
        input.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                maxPool2DForward(input: x.baseAddress!, planes: planes, window: window, output: y.baseAddress!,
                                 argmax: base)
            }
        }
        initialized = indices.count
    }
    let inputShape = input.shape
    output.record("maxPool2D", inputs: [input]) { g in
        [Tensor(shape: inputShape) { dx in
            g.withUnsafeBufferPointer { dy in
                argmax.withUnsafeBufferPointer { indices in
                    maxPool2DBackward(outputGradient: dy.baseAddress!, argmax: indices.baseAddress!, planes: planes,
                                      window: window, inputGradient: dx.baseAddress!)
                }
            }
        }]
    }
    return output
}

/// 2-d average pooling (PyTorch's `F.avg_pool2d`, floor mode) as one autodiff node.
///
/// Shapes: `input` (N, C, H, W) → (N, C, oH, oW); `stride` defaults to the window.
/// With `countsPadding` (PyTorch's default `count_include_pad=True`) every window divides by
/// kH·kW; otherwise by the number of input positions it covers.
public func averagePool2D(_ input: Tensor, kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0,
                          countsPadding: Bool = true) -> Tensor {
    let window = _poolingWindow(input, kernelSize: kernelSize, stride: stride ?? kernelSize, padding: padding,
                                dilation: 1, what: "averagePool2D")
    let planes = input.shape[0] * input.shape[1]
    let outputShape = [input.shape[0], input.shape[1], window.outputSize.height, window.outputSize.width]
    var output = Tensor(shape: outputShape) { y in
        input.withUnsafeBufferPointer { x in
            averagePool2DForward(input: x.baseAddress!, planes: planes, window: window, countsPadding: countsPadding,
                                 output: y.baseAddress!)
        }
    }
    let inputShape = input.shape
    output.record("averagePool2D", inputs: [input]) { g in
        [Tensor(shape: inputShape) { dx in
            g.withUnsafeBufferPointer { dy in
                averagePool2DBackward(outputGradient: dy.baseAddress!, planes: planes, window: window,
                                      countsPadding: countsPadding, inputGradient: dx.baseAddress!)
            }
        }]
    }
    return output
}

/// Global average pooling (Keras' `GlobalAveragePooling2D`) as one autodiff node:
/// the mean of every channel's plane. Shapes: `input` (N, C, H, W) → (N, C).
public func globalAveragePool2D(_ input: Tensor) -> Tensor {
    precondition(input.rank == 4 && input.shape[2] * input.shape[3] > 0,
                 "globalAveragePool2D expects non-empty input (N, C, H, W), got shape \(input.shape)")
    let planes = input.shape[0] * input.shape[1], planeSize = input.shape[2] * input.shape[3]
    var output = Tensor(shape: [input.shape[0], input.shape[1]]) { y in
        input.withUnsafeBufferPointer { x in
            globalAveragePoolForward(input: x.baseAddress!, planes: planes, planeSize: planeSize, output: y.baseAddress!)
        }
    }
    let inputShape = input.shape
    output.record("globalAveragePool2D", inputs: [input]) { g in
        [Tensor(shape: inputShape) { dx in
            g.withUnsafeBufferPointer { dy in
                globalAveragePoolBackward(outputGradient: dy.baseAddress!, planes: planes, planeSize: planeSize,
                                          inputGradient: dx.baseAddress!)
            }
        }]
    }
    return output
}
