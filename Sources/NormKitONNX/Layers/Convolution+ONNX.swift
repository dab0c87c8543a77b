import NormKitCore
import NormKitNN

extension ONNXGraphBuilder {
    /// Checks that `input` is (batch, C, H, W) and returns (C, H, W).
    static func imageShape(_ input: ONNXValue, path: String, layer: String,
                           channels: Int? = nil) throws -> (channels: Int, height: Int, width: Int) {
        guard input.featureShape.count == 3, channels.map({ $0 == input.featureShape[0] }) ?? true else {
            throw ONNXExportError.shapeMismatch(path: path, layer: layer,
                                                expected: "(batch, \(channels.map(String.init) ?? "C"), H, W)",
                                                got: input.featureShape)
        }
        return (input.featureShape[0], input.featureShape[1], input.featureShape[2])
    }

    /// (channels, H′, W′) after a sliding window (convolution or pooling) over `image`, sized by
    /// NormKitCore's `SlidingWindow` as the layer itself sizes it (floor mode, as in PyTorch). A dilated
    /// window larger than the padded image throws here rather than trapping in `SlidingWindow`.
    static func windowedShape(_ image: (channels: Int, height: Int, width: Int), channels: Int, kernel: Size2D,
                              stride: Size2D, padding: Size2D, dilation: Size2D = Size2D(1),
                              path: String, layer: String) throws -> [Int] {
        let fits = image.height + 2 * padding.height >= dilation.height * (kernel.height - 1) + 1
            && image.width + 2 * padding.width >= dilation.width * (kernel.width - 1) + 1
        guard fits else {
            throw ONNXExportError.shapeMismatch(path: path, layer: layer,
                                                expected: "an image at least as large as the window \(kernel) "
                                                    + "(dilation \(dilation), padding \(padding))",
                                                got: [image.channels, image.height, image.width])
        }
        let window = SlidingWindow(inputSize: Size2D(image.height, image.width), window: kernel, stride: stride,
                                   padding: padding, dilation: dilation, what: layer)
        return [channels, window.outputSize.height, window.outputSize.width]
    }

    /// kernel_shape, strides and pads (ONNX lists pads as [top, left, bottom, right]).
    static func windowAttributes(kernel: Size2D, stride: Size2D, padding: Size2D) -> [ONNXAttribute] {
        [.ints("kernel_shape", [kernel.height, kernel.width]), .ints("strides", [stride.height, stride.width]),
         .ints("pads", [padding.height, padding.width, padding.height, padding.width])]
    }
}

/// Conv2D → `Conv(X, W, B)`: W (out, in/groups, kH, kW) as NormKit and PyTorch store it,
/// with kernel_shape, strides, symmetric pads, dilations and group.
extension Conv2D: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let image = try ONNXGraphBuilder.imageShape(input, path: path, layer: description, channels: inChannels)
        let outputShape = try ONNXGraphBuilder.windowedShape(image, channels: outChannels, kernel: kernelSize, stride: stride,
                                                             padding: padding, dilation: dilation,
                                                             path: path, layer: description)
        var inputs = [input.name, graph.addInitializer(childPath(path, "weight"), weight.value)]
        if let bias { inputs.append(graph.addInitializer(childPath(path, "bias"), bias.value)) }
        let attributes = ONNXGraphBuilder.windowAttributes(kernel: kernelSize, stride: stride, padding: padding)
            + [.ints("dilations", [dilation.height, dilation.width]), .int("group", groups)]
        let output = graph.addNode("Conv", path: path, inputs: inputs, attributes: attributes)
        return ONNXValue(name: output, featureShape: outputShape)
    }
}

/// MaxPool2D → `MaxPool` (floor mode: ceil_mode 0, the default).
extension MaxPool2D: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let image = try ONNXGraphBuilder.imageShape(input, path: path, layer: description)
        let outputShape = try ONNXGraphBuilder.windowedShape(image, channels: image.channels, kernel: kernelSize,
                                                             stride: stride, padding: padding, dilation: dilation,
                                                             path: path, layer: description)
        let attributes = ONNXGraphBuilder.windowAttributes(kernel: kernelSize, stride: stride, padding: padding)
            + [.ints("dilations", [dilation.height, dilation.width])]
        let output = graph.addNode("MaxPool", path: path, inputs: [input.name], attributes: attributes)
        return ONNXValue(name: output, featureShape: outputShape)
    }
}

/// AvgPool2D → `AveragePool`; count_include_pad follows `countsPadding`.
extension AvgPool2D: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let image = try ONNXGraphBuilder.imageShape(input, path: path, layer: description)
        let outputShape = try ONNXGraphBuilder.windowedShape(image, channels: image.channels, kernel: kernelSize,
                                                             stride: stride, padding: padding,
                                                             path: path, layer: description)
        let attributes = ONNXGraphBuilder.windowAttributes(kernel: kernelSize, stride: stride, padding: padding)
            + [.int("count_include_pad", countsPadding ? 1 : 0)]
        let output = graph.addNode("AveragePool", path: path, inputs: [input.name], attributes: attributes)
        return ONNXValue(name: output, featureShape: outputShape)
    }
}

/// (batch, C, H, W) → (batch, C): ONNX's `GlobalAveragePool` keeps 1×1 planes, so a Flatten follows.
extension GlobalAveragePooling2D: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let image = try ONNXGraphBuilder.imageShape(input, path: path, layer: description)
        let pooled = graph.addNode("GlobalAveragePool", path: path, inputs: [input.name])
        let output = graph.addNode("Flatten", path: path, inputs: [pooled], attributes: [.int("axis", 1)])
        return ONNXValue(name: output, featureShape: [image.channels])
    }
}

/// Dropout is the identity in inference: no node at all.
extension Dropout: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        input
    }
}
