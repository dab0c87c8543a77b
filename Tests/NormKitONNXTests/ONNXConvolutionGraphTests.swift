// Convolution and pooling layers in the exported graph: attributes in ONNX's
// conventions (pads as [top, left, bottom, right]), output shapes, and the
// layers that export to nothing (Dropout) or to two nodes (global average pooling).

import Foundation
import NormKitCore
import NormKitNN
@testable import NormKitONNX
import Testing

private func exportedGraph(_ model: Module, inputShape: [Int]) throws -> Onnx_GraphProto {
    try ONNXExporter().modelProto(for: model, inputShape: inputShape).graph
}

@Suite("Convolution and pooling in the exported ONNX graph")
struct ONNXConvolutionGraphTests {
    @Test("Conv2D becomes Conv with kernel_shape, strides, pads [t, l, b, r], dilations and group")
    func convAttributes() throws {
        let model = Sequential {
            Conv2D(4, 6, kernelSize: [3, 2], stride: [1, 2], padding: [2, 1], dilation: [2, 1], groups: 2,
                   generator: SeededGenerator(seed: 1))
        }
        let graph = try exportedGraph(model, inputShape: [4, 9, 8])
        let conv = try #require(graph.nodes("Conv").first)
        #expect(conv.input == ["input", "0.weight", "0.bias"])
        #expect(conv.attribute("kernel_shape")?.ints == [3, 2])
        #expect(conv.attribute("strides")?.ints == [1, 2])
        #expect(conv.attribute("pads")?.ints == [2, 1, 2, 1])
        #expect(conv.attribute("dilations")?.ints == [2, 1])
        #expect(conv.attribute("group")?.i == 2)
        #expect(graph.initializer(named: "0.weight")?.dims == [6, 2, 3, 2])
        // oH = ⌊(9 + 4 − 2·2 − 1)/1⌋ + 1 = 9, oW = ⌊(8 + 2 − 1 − 1)/2⌋ + 1 = 5.
        #expect(graph.output.first?.dimensions == ["batch", "6", "9", "5"])
    }

    @Test("MaxPool, AveragePool with count_include_pad, and GlobalAveragePool followed by Flatten")
    func poolingAttributes() throws {
        let model = Sequential {
            MaxPool2D(2)
            AvgPool2D(3, stride: 1, padding: 1, countsPadding: false)
            GlobalAveragePooling2D()
        }
        let graph = try exportedGraph(model, inputShape: [3, 8, 8])
        #expect(graph.opTypes == ["MaxPool", "AveragePool", "GlobalAveragePool", "Flatten"])
        #expect(graph.node[0].attribute("kernel_shape")?.ints == [2, 2])
        #expect(graph.node[0].attribute("strides")?.ints == [2, 2])
        #expect(graph.node[0].attribute("pads")?.ints == [0, 0, 0, 0])
        #expect(graph.node[1].attribute("pads")?.ints == [1, 1, 1, 1])
        #expect(graph.node[1].attribute("count_include_pad")?.i == 0)
        #expect(graph.output.first?.dimensions == ["batch", "3"])
    }

    @Test("Dropout is the identity in inference and adds no node")
    func dropoutAddsNothing() throws {
        let model = Sequential {
            Dropout(0.5, generator: SeededGenerator(seed: 2))
            ReLU()
        }
        #expect(try exportedGraph(model, inputShape: [4]).opTypes == ["Relu"])
    }

    @Test("a convolution given images of the wrong channel count")
    func convChannelMismatch() throws {
        let model = Sequential { Conv2D(3, 4, kernelSize: 3, generator: SeededGenerator(seed: 3)) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: model, inputShape: [1, 8, 8]) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: model, inputShape: [3 * 8 * 8]) }
    }

    @Test("a window larger than the padded image is a shape error, not a 1×1 or negative output size")
    func windowLargerThanImage() throws {
        // ⌊(2 − 3)/3⌋ truncates to 0 in Swift, so the plain formula would report a 1×1 output.
        let pool = Sequential { MaxPool2D(3) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: pool, inputShape: [1, 2, 2]) }
        let conv = Sequential { Conv2D(1, 2, kernelSize: 5, generator: SeededGenerator(seed: 4)) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: conv, inputShape: [1, 3, 3]) }
        // Padding makes room: 3 + 2·1 ≥ 5, one output position.
        let padded = Sequential { Conv2D(1, 2, kernelSize: 5, padding: 1, generator: SeededGenerator(seed: 4)) }
        #expect(try exportedGraph(padded, inputShape: [1, 3, 3]).output.first?.dimensions == ["batch", "2", "1", "1"])
    }

    @Test("SeedCNN exports its layers in order under PyTorch's indices")
    func seedCNN() throws {
        let graph = try exportedGraph(SeedCNN(imageSize: 8, generator: SeededGenerator(seed: 10)), inputShape: [1, 8, 8])
        #expect(graph.opTypes == ["Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "BatchNormalization", "Relu",
                                  "MaxPool", "Flatten", "Gemm", "BatchNormalization", "Relu", "Gemm"])
        #expect(graph.initializerNames.prefix(6) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                     "1.running_var"])
        #expect(graph.output.first?.dimensions == ["batch", "10"])
    }
}
