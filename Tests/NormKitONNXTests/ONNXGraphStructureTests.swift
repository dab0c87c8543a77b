// The exported graph node by node, without Python: operator types and their
// order, how values chain, initializer names/shapes/values, attributes, the
// declared input and output, and the errors for what cannot be exported.

import Foundation
import NormKitCore
import NormKitNN
@testable import NormKitONNX
import Testing

/// Dense → BN → ReLU → Dense → Softmax with BN running statistics moved by two training batches.
private func makeMLP() throws -> Sequential {
    let model = Sequential {
        Linear(6, 4, generator: SeededGenerator(seed: 1))
        BatchNorm1d(4)
        ReLU()
        Linear(4, 3, generator: SeededGenerator(seed: 2))
        Softmax()
    }
    try warmUpRunningStatistics(model, batches: [randomTensor([8, 6], seed: 3), randomTensor([8, 6], seed: 4)])
    return model
}

private func exportedGraph(_ model: Module, inputShape: [Int]) throws -> Onnx_GraphProto {
    try ONNXExporter().modelProto(for: model, inputShape: inputShape).graph
}

@Suite("The exported ONNX graph")
struct ONNXGraphStructureTests {
    @Test("the model declares IR 8, opset 17 of the default domain and NormKit as producer")
    func modelHeader() throws {
        let data = try ONNXExporter().modelData(for: try makeMLP(), inputShape: [6])
        let decoded = try Onnx_ModelProto(serializedBytes: data)
        #expect(decoded.irVersion == 8)
        #expect(decoded.opsetImport.map(\.domain) == [""])
        #expect(decoded.opsetImport.map(\.version) == [17])
        #expect(decoded.producerName == "NormKit")
        #expect(decoded.graph.name == "Sequential")
    }

    @Test("an MLP becomes Gemm, BatchNormalization, Relu, Gemm, Softmax, each reading the previous output")
    func mlpNodesChain() throws {
        let graph = try exportedGraph(try makeMLP(), inputShape: [6])
        #expect(graph.opTypes == ["Gemm", "BatchNormalization", "Relu", "Gemm", "Softmax"])
        #expect(graph.node.first?.input.first == "input")
        for (previous, next) in zip(graph.node, graph.node.dropFirst()) {
            #expect(next.input.first == previous.output.first, "\(next.name) reads \(next.input), not \(previous.output)")
        }
        #expect(graph.node.last?.output == ["output"])
        #expect(Set(graph.node.map(\.name)).count == graph.node.count, "node names are unique")
    }

    @Test("the input and output have a symbolic batch dimension and fixed feature dimensions")
    func dynamicBatchDimension() throws {
        let graph = try exportedGraph(try makeMLP(), inputShape: [6])
        #expect(graph.input.map(\.name) == ["input"])
        #expect(graph.input.first?.dimensions == ["batch", "6"])
        #expect(graph.output.map(\.name) == ["output"])
        #expect(graph.output.first?.dimensions == ["batch", "3"])
        #expect(graph.input.first?.type.tensorType.elemType == 1, "float32")
    }

    @Test("initializers carry the state-dict names, shapes and exact values; Linear's W stays (out, in)")
    func initializersMatchParameters() throws {
        let model = try makeMLP()
        let graph = try exportedGraph(model, inputShape: [6])
        let bn = try #require(model.layers[1] as? BatchNorm)
        var expected = model.namedParameters().map { ($0.0, $0.1.value) }
        expected.insert(contentsOf: [("1.running_mean", bn.runningMean!), ("1.running_var", bn.runningVariance!)],
                        at: 4)
        #expect(graph.initializerNames == expected.map(\.0))
        for (name, tensor) in expected {
            let stored = try #require(graph.initializer(named: name))
            #expect(stored.dims == tensor.shape.map(Int64.init), "\(name)")
            #expect(stored.dataType == 1, "\(name) is float32")
            #expect(stored.floatValues == tensor.scalars, "\(name) values")
        }
        #expect(graph.initializer(named: "0.weight")?.dims == [4, 6])
    }

    @Test("Gemm multiplies by the transposed (out, in) weight and adds the bias")
    func gemmAttributes() throws {
        let graph = try exportedGraph(try makeMLP(), inputShape: [6])
        let gemm = try #require(graph.nodes("Gemm").first)
        #expect(gemm.input == ["input", "0.weight", "0.bias"])
        #expect(gemm.attribute("transB")?.i == 1)
        #expect(gemm.attribute("transB")?.type == .int)
        #expect(gemm.attribute("transA") == nil)
    }

    @Test("a Linear without bias becomes a two-input Gemm")
    func gemmWithoutBias() throws {
        let model = Sequential { Linear(3, 2, bias: false, generator: SeededGenerator(seed: 5)) }
        let graph = try exportedGraph(model, inputShape: [3])
        #expect(graph.nodes("Gemm").first?.input == ["input", "0.weight"])
        #expect(graph.initializerNames == ["0.weight"])
    }

    @Test("PyTorch-style BN: epsilon 1e-5, momentum 0.9 (ONNX weights the old value), running stats as stored")
    func batchNormAttributesPyTorch() throws {
        let graph = try exportedGraph(try makeMLP(), inputShape: [6])
        let node = try #require(graph.nodes("BatchNormalization").first)
        #expect(node.input.dropFirst() == ["1.weight", "1.bias", "1.running_mean", "1.running_var"])
        #expect(node.attribute("epsilon")?.f == 1e-5)
        #expect(node.attribute("epsilon")?.type == .float)
        #expect(node.attribute("momentum")?.f == 1 - Float(0.1))
        #expect(node.attribute("training_mode") == nil, "inference (the default)")
    }

    @Test("Keras-style BN: epsilon 1e-3 and momentum 0.99 written as given")
    func batchNormAttributesKeras() throws {
        let model = Sequential(inputShape: [4]) { BatchNormalization() }
        let node = try #require(try exportedGraph(model, inputShape: [4]).nodes("BatchNormalization").first)
        #expect(node.attribute("epsilon")?.f == 1e-3)
        #expect(node.attribute("momentum")?.f == 0.99)
    }

    @Test("a cumulative-average BN has no ONNX momentum and leaves the attribute out")
    func cumulativeAverageHasNoMomentum() throws {
        let model = Sequential { BatchNorm1d(3, runningAverage: .cumulativeAverage) }
        let node = try #require(try exportedGraph(model, inputShape: [3]).nodes("BatchNormalization").first)
        #expect(node.attribute("momentum") == nil)
        #expect(node.attribute("epsilon") != nil)
    }

    @Test("a BN without affine parameters gets scale 1 and bias 0")
    func nonAffineBatchNorm() throws {
        let model = Sequential { BatchNorm1d(3, affine: false) }
        let graph = try exportedGraph(model, inputShape: [3])
        #expect(graph.initializer(named: "0.weight")?.floatValues == [1, 1, 1])
        #expect(graph.initializer(named: "0.bias")?.floatValues == [0, 0, 0])
    }

    @Test("channels-last BN on rank 4 is wrapped in Transposes that move the features to axis 1 and back")
    func channelsLastBatchNorm() throws {
        let model = Sequential(inputShape: [2, 3, 5]) { BatchNormalization() }
        let graph = try exportedGraph(model, inputShape: [2, 3, 5])
        #expect(graph.opTypes == ["Transpose", "BatchNormalization", "Transpose"])
        #expect(graph.node[0].attribute("perm")?.ints == [0, 3, 1, 2])
        #expect(graph.node[0].attribute("perm")?.type == .ints)
        #expect(graph.node[2].attribute("perm")?.ints == [0, 2, 3, 1])
        #expect(graph.initializer(named: "0.running_mean")?.dims == [5])
        #expect(graph.output.first?.dimensions == ["batch", "2", "3", "5"])
    }

    @Test("BatchNorm2d on (batch, C, H, W) is one BatchNormalization over axis 1")
    func batchNorm2d() throws {
        let graph = try exportedGraph(Sequential { BatchNorm2d(3) }, inputShape: [3, 4, 4])
        #expect(graph.opTypes == ["BatchNormalization"])
        #expect(graph.initializer(named: "0.running_var")?.dims == [3])
    }

    @Test("channels-last BN on rank 2 needs no Transpose: the last axis is axis 1")
    func channelsLastRankTwoBatchNorm() throws {
        let model = Sequential(inputShape: [4]) { BatchNormalization() }
        #expect(try exportedGraph(model, inputShape: [4]).opTypes == ["BatchNormalization"])
    }

    @Test("activations, Softmax over axis −1 and Flatten from axis 1")
    func activationsAndFlatten() throws {
        let model = Sequential {
            Flatten()
            Sigmoid()
            Tanh()
            ReLU()
            Softmax()
        }
        let graph = try exportedGraph(model, inputShape: [2, 3])
        #expect(graph.opTypes == ["Flatten", "Sigmoid", "Tanh", "Relu", "Softmax"])
        #expect(graph.node[0].attribute("axis")?.i == 1)
        #expect(graph.node[4].attribute("axis")?.i == -1)
        #expect(graph.output.first?.dimensions == ["batch", "6"])
        #expect(graph.initializer.isEmpty)
    }

    @Test("a nested Sequential's parameters keep their full dotted names")
    func nestedSequential() throws {
        let model = Sequential {
            Sequential { Linear(3, 2, generator: SeededGenerator(seed: 6)) }
            ReLU()
        }
        let graph = try exportedGraph(model, inputShape: [3])
        #expect(graph.initializerNames == ["0.0.weight", "0.0.bias"])
        #expect(graph.opTypes == ["Gemm", "Relu"])
    }

    @Test("a model whose batch norm was folded into the Linear before it exports without BatchNormalization")
    func foldedBatchNorm() throws {
        let model = try makeMLP()
        model.eval()
        let graph = try exportedGraph(try model.foldingBatchNorms(), inputShape: [6])
        #expect(graph.opTypes == ["Gemm", "Relu", "Gemm", "Softmax"])
    }

    @Test("SeedMLP exports as fc1, bn, relu, fc2, softmax with its own parameter names")
    func seedMLP() throws {
        let graph = try exportedGraph(SeedMLP(inputFeatures: 5, hiddenFeatures: 4, classes: 3), inputShape: [5])
        #expect(graph.opTypes == ["Gemm", "BatchNormalization", "Relu", "Gemm", "Softmax"])
        #expect(graph.initializerNames == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                           "bn.running_var", "fc2.weight", "fc2.bias"])
        let withoutBN = try exportedGraph(SeedMLP(inputFeatures: 5, hiddenFeatures: 4, classes: 3, batchNorm: false),
                                          inputShape: [5])
        #expect(withoutBN.opTypes == ["Gemm", "Relu", "Gemm", "Softmax"])
    }

    @Test("an empty Sequential becomes one Identity from input to output")
    func emptySequential() throws {
        let graph = try exportedGraph(Sequential([]), inputShape: [3])
        #expect(graph.opTypes == ["Identity"])
        #expect(graph.node[0].input == ["input"])
        #expect(graph.node[0].output == ["output"])
    }

    @Test("exportONNX writes the same bytes modelData returns, and export leaves the model's mode alone")
    func exportWritesFile() throws {
        let model = try makeMLP()
        model.train()
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("mlp.onnx")
        try model.exportONNX(to: url, inputShape: [6])
        #expect(try Data(contentsOf: url) == ONNXExporter().modelData(for: model, inputShape: [6]))
        #expect(model.mode == .training)
    }
}

/// A model with its own forward, which the exporter cannot trace.
private final class CustomNet: Module {
    let fc = Linear(3, 2, generator: SeededGenerator(seed: 7))
    override func forward(_ input: Tensor) throws -> Tensor { try relu(fc(input)) }
}

@Suite("What cannot be exported throws an error naming it")
struct ONNXExportErrorTests {
    @Test("a custom Module subclass as the model: only Sequential and SeedMLP can be exported")
    func customModelIsRejected() throws {
        let error = try #require(throws: ONNXExportError.self) {
            try ONNXExporter().modelData(for: CustomNet(), inputShape: [3])
        }
        #expect(error == .unsupportedLayer(path: "", layer: "CustomNet"))
        #expect(error.description.contains("Sequential"))
        #expect(error.description.contains("CustomNet"))
    }

    @Test("an unknown layer inside a Sequential is named by its position")
    func unknownLayerIsNamed() throws {
        let model = Sequential {
            Linear(3, 3, generator: SeededGenerator(seed: 8))
            CustomNet()
        }
        let error = try #require(throws: ONNXExportError.self) {
            try ONNXExporter().modelData(for: model, inputShape: [3])
        }
        #expect(error == .unsupportedLayer(path: "1", layer: "CustomNet"))
        #expect(error.description.contains("1 (CustomNet)"))
    }

    @Test("a lazy Dense that was never built")
    func unbuiltDense() throws {
        let model = Sequential { Linear(outFeatures: 4, generator: SeededGenerator(seed: 9)) }
        #expect(throws: ONNXExportError.unbuiltLayer(path: "0", layer: "Linear(? → 4)")) {
            try ONNXExporter().modelData(for: model, inputShape: [3])
        }
    }

    @Test("an input shape the first layer does not accept")
    func shapeMismatch() throws {
        let model = Sequential { Linear(4, 2, generator: SeededGenerator(seed: 10)) }
        let error = try #require(throws: ONNXExportError.self) {
            try ONNXExporter().modelData(for: model, inputShape: [5])
        }
        #expect(error == .shapeMismatch(path: "0", layer: "Linear(4 → 2)", expected: "(batch, 4)", got: [5]))
        #expect(error.description.contains("got (batch, 5)"))
    }

    @Test("a BN whose feature count does not match the input")
    func batchNormShapeMismatch() throws {
        let model = Sequential { BatchNorm1d(4) }
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: model, inputShape: [5]) }
    }

    @Test("a BN that normalizes with batch statistics in inference")
    func batchStatisticsInInference() throws {
        let untracked = Sequential { BatchNorm1d(3, tracksRunningStatistics: false) }
        #expect(throws: ONNXExportError.batchStatisticsInInference(path: "0", layer: untracked.layers[0].description)) {
            try ONNXExporter().modelData(for: untracked, inputShape: [3])
        }
        let forced = BatchNorm1d(3)
        forced.statistics = .batch
        #expect(throws: ONNXExportError.self) { try ONNXExporter().modelData(for: Sequential { forced }, inputShape: [3]) }
    }

    @Test("an empty or non-positive input shape", arguments: [[], [0], [3, -1]])
    func invalidInputShape(shape: [Int]) throws {
        #expect(throws: ONNXExportError.invalidInputShape(shape)) {
            try ONNXExporter().modelData(for: Sequential { ReLU() }, inputShape: shape)
        }
    }
}
