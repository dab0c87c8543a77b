// LayerNorm, GroupNorm and InstanceNorm in the exported graph: which opset-17
// operators express them and with which initializers and attributes.

import Foundation
import NormKitCore
import NormKitNN
@testable import NormKitONNX
import Testing

private func exportedGraph(_ model: Module, inputShape: [Int]) throws -> Onnx_GraphProto {
    try ONNXExporter().modelProto(for: model, inputShape: inputShape).graph
}

@Suite("Normalization siblings in the exported ONNX graph")
struct ONNXNormSiblingsGraphTests {
    @Test("LayerNorm over two trailing axes is LayerNormalization with axis −2, ε and γ, β")
    func layerNorm() throws {
        let model = Sequential { LayerNorm(normalizedShape: [4, 5], epsilon: 1e-4) }
        let graph = try exportedGraph(model, inputShape: [3, 4, 5])
        let node = try #require(graph.nodes("LayerNormalization").first)
        #expect(graph.opTypes == ["LayerNormalization"])
        #expect(node.input == ["input", "0.weight", "0.bias"])
        #expect(node.attribute("axis")?.i == -2)
        #expect(node.attribute("epsilon")?.f == 1e-4)
        #expect(graph.initializer(named: "0.weight")?.dims == [4, 5])
    }

    @Test("LayerNorm without β leaves B out; without affine it writes scale 1")
    func layerNormWithoutAffine() throws {
        let noBias = try exportedGraph(Sequential { LayerNorm(3, bias: false) }, inputShape: [3])
        #expect(noBias.nodes("LayerNormalization").first?.input == ["input", "0.weight"])
        let plain = try exportedGraph(Sequential { LayerNorm(3, elementwiseAffine: false) }, inputShape: [3])
        #expect(plain.nodes("LayerNormalization").first?.input == ["input", "0.weight"])
        #expect(plain.initializer(named: "0.weight")?.floatValues == [1, 1, 1])
    }

    @Test("a Keras LayerNormalization that was never built, and a LayerNorm given the wrong trailing shape")
    func layerNormErrors() throws {
        let lazy = LayerNormalization()
        #expect(throws: ONNXExportError.unbuiltLayer(path: "0", layer: lazy.description)) {
            try ONNXExporter().modelData(for: Sequential { lazy }, inputShape: [3])
        }
        #expect(throws: ONNXExportError.self) {
            try ONNXExporter().modelData(for: Sequential { LayerNorm(normalizedShape: [4, 5]) }, inputShape: [5, 4])
        }
    }

    @Test("GroupNorm: Reshape to (N, G, −1), InstanceNormalization, Reshape back, Mul γ, Add β per channel")
    func groupNorm() throws {
        let model = Sequential { GroupNorm(groupCount: 3, channelCount: 6, epsilon: 1e-3) }
        let graph = try exportedGraph(model, inputShape: [6, 4, 5])
        #expect(graph.opTypes == ["Reshape", "InstanceNormalization", "Reshape", "Mul", "Add"])
        let grouped = try #require(graph.initializer(named: graph.node[0].input[1]))
        #expect(grouped.dataType == 7, "int64")
        #expect(grouped.int64Values == [0, 3, -1])
        #expect(graph.initializer(named: graph.node[2].input[1])?.int64Values == [0, 6, 4, 5])
        #expect(graph.node[1].attribute("epsilon")?.f == 1e-3)
        #expect(graph.initializer(named: graph.node[1].input[1])?.floatValues == [1, 1, 1])
        #expect(graph.initializer(named: graph.node[1].input[2])?.floatValues == [0, 0, 0])
        #expect(graph.initializer(named: "0.weight")?.dims == [6, 1, 1])
        #expect(graph.node[3].input.last == "0.weight")
        #expect(graph.node[4].input.last == "0.bias")
        #expect(graph.output.first?.dimensions == ["batch", "6", "4", "5"])
    }

    @Test("GroupNorm without affine stops after the second Reshape; on (N, C) γ stays (C)")
    func groupNormVariants() throws {
        let plain = try exportedGraph(Sequential { GroupNorm(groupCount: 2, channelCount: 4, affine: false) },
                                      inputShape: [4, 3])
        #expect(plain.opTypes == ["Reshape", "InstanceNormalization", "Reshape"])
        let flat = try exportedGraph(Sequential { GroupNorm(groupCount: 2, channelCount: 4) }, inputShape: [4])
        #expect(flat.initializer(named: "0.weight")?.dims == [4])
        #expect(throws: ONNXExportError.self) {
            try ONNXExporter().modelData(for: Sequential { GroupNorm(groupCount: 2, channelCount: 4) }, inputShape: [6])
        }
    }

    @Test("InstanceNorm without running estimates is InstanceNormalization (scale 1, B 0 without affine)")
    func instanceNorm() throws {
        let graph = try exportedGraph(Sequential { InstanceNorm2d(3) }, inputShape: [3, 4, 4])
        let node = try #require(graph.nodes("InstanceNormalization").first)
        #expect(graph.opTypes == ["InstanceNormalization"])
        #expect(node.input == ["input", "0.weight", "0.bias"])
        #expect(node.attribute("epsilon")?.f == 1e-5)
        #expect(graph.initializer(named: "0.weight")?.floatValues == [1, 1, 1])
        #expect(graph.initializer(named: "0.bias")?.floatValues == [0, 0, 0])
    }

    @Test("InstanceNorm with running estimates normalizes with them in inference: BatchNormalization")
    func trackedInstanceNorm() throws {
        let model = Sequential { InstanceNorm1d(3, tracksRunningStatistics: true) }
        let graph = try exportedGraph(model, inputShape: [3, 7])
        #expect(graph.opTypes == ["BatchNormalization"])
        #expect(graph.initializerNames == ["0.weight", "0.bias", "0.running_mean",
                                           "0.running_var"])
        #expect(graph.nodes("BatchNormalization").first?.attribute("momentum")?.f == 1 - Float(0.1))
    }

    @Test("InstanceNorm given the wrong rank or channel count")
    func instanceNormShapeMismatch() throws {
        let model = Sequential { InstanceNorm2d(3) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: model, inputShape: [3, 4]) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: model, inputShape: [2, 4, 4]) }
    }
}
