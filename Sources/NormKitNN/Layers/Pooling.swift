import NormKitCore

/// 2-d max pooling over NCHW images (PyTorch's `nn.MaxPool2d`, floor mode).
///
/// Shapes: (N, C, H, W) → (N, C, oH, oW), oH = ⌊(H + 2·padding − dilation·(k − 1) − 1)/stride⌋ + 1.
/// `stride` defaults to the window; padding (at most half the window) never wins.
public final class MaxPool2D: Module {
    public let kernelSize: Size2D
    public let stride: Size2D
    public let padding: Size2D
    public let dilation: Size2D

    public init(_ kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0, dilation: Size2D = 1) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.dilation = dilation
        super.init()
    }

    public override func build(inputShape: [Int]) -> [Int] {
        precondition(inputShape.count == 4, "\(description) expects input (N, C, H, W), got shape \(inputShape)")
        let window = SlidingWindow(inputSize: Size2D(inputShape[2], inputShape[3]), window: kernelSize, stride: stride,
                                   padding: padding, dilation: dilation, what: description)
        return [inputShape[0], inputShape[1], window.outputSize.height, window.outputSize.width]
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        maxPool2D(input, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation)
    }

    public override var description: String { "MaxPool2D(\(kernelSize), stride: \(stride))" }
}

/// 2-d average pooling over NCHW images (PyTorch's `nn.AvgPool2d`, floor mode).
///
/// Shapes: (N, C, H, W) → (N, C, oH, oW). `stride` defaults to the window. With
/// `countsPadding` (PyTorch's default `count_include_pad=True`) every window divides by its
/// full size, padding included; otherwise by the input positions it covers.
public final class AvgPool2D: Module {
    public let kernelSize: Size2D
    public let stride: Size2D
    public let padding: Size2D
    public let countsPadding: Bool

    public init(_ kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0, countsPadding: Bool = true) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.countsPadding = countsPadding
        super.init()
    }

    public override func build(inputShape: [Int]) -> [Int] {
        precondition(inputShape.count == 4, "\(description) expects input (N, C, H, W), got shape \(inputShape)")
        let window = SlidingWindow(inputSize: Size2D(inputShape[2], inputShape[3]), window: kernelSize, stride: stride,
                                   padding: padding, dilation: 1, what: description)
        return [inputShape[0], inputShape[1], window.outputSize.height, window.outputSize.width]
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        averagePool2D(input, kernelSize: kernelSize, stride: stride, padding: padding, countsPadding: countsPadding)
    }

    public override var description: String { "AvgPool2D(\(kernelSize), stride: \(stride))" }
}

/// The mean of every channel's plane (Keras' `GlobalAveragePooling2D`; PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` followed by `nn.Flatten()`). Shapes: (N, C, H, W) → (N, C).
public final class GlobalAveragePooling2D: Module {
    public override init() { super.init() }

    public override func build(inputShape: [Int]) -> [Int] {
        precondition(inputShape.count == 4, "GlobalAveragePooling2D expects input (N, C, H, W), got shape \(inputShape)")
        return [inputShape[0], inputShape[1]]
    }

    public override func forward(_ input: Tensor) throws -> Tensor { globalAveragePool2D(input) }
}

/// PyTorch spelling of `MaxPool2D`.
public typealias MaxPool2d = MaxPool2D
/// PyTorch spelling of `AvgPool2D`.
public typealias AvgPool2d = AvgPool2D
