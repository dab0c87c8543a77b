import Foundation
import NormKitCore
import NormKitNN

/// A value flowing through the exported graph: its ONNX name and its shape after
/// the batch axis. The batch axis is always axis 0 and dynamic (named "batch").
public struct ONNXValue: Sendable, Equatable {
    public let name: String
    /// Every dimension after the batch axis: [784] for (batch, 784).
    public let featureShape: [Int]

    public init(name: String, featureShape: [Int]) {
        self.name = name
        self.featureShape = featureShape
    }

    /// The rank including the batch axis.
    public var rank: Int { featureShape.count + 1 }
}

/// A named attribute of an ONNX node (`transB = 1`, `epsilon = 1e-5`, …).
public struct ONNXAttribute {
    let proto: Onnx_AttributeProto

    public var name: String { proto.name }

    private init(_ name: String, _ type: Onnx_AttributeProto.AttributeType, _ fill: (inout Onnx_AttributeProto) -> Void) {
        var proto = Onnx_AttributeProto()
        proto.name = name
        proto.type = type
        fill(&proto)
        self.proto = proto
    }

    public static func int(_ name: String, _ value: Int) -> ONNXAttribute {
        ONNXAttribute(name, .int) { $0.i = Int64(value) }
    }

    public static func float(_ name: String, _ value: Float) -> ONNXAttribute {
        ONNXAttribute(name, .float) { $0.f = value }
    }

    public static func ints(_ name: String, _ values: [Int]) -> ONNXAttribute {
        ONNXAttribute(name, .ints) { $0.ints = values.map(Int64.init) }
    }

    public static func floats(_ name: String, _ values: [Float]) -> ONNXAttribute {
        ONNXAttribute(name, .floats) { $0.floats = values }
    }

    public static func string(_ name: String, _ value: String) -> ONNXAttribute {
        ONNXAttribute(name, .string) { $0.s = Data(value.utf8) }
    }
}

/// Collects the nodes and initializers of an ONNX inference graph.
///
/// Layers append to it through `ONNXExportable`: `addInitializer` stores a
/// constant tensor (a weight) under its state-dict name, `addNode` appends one
/// operator and returns the name of the value it produces. Names are kept
/// unique, so a layer never has to know what the others called their values.
public struct ONNXGraphBuilder {
    /// The graph's input: (batch, inputShape…) float32.
    public let input: ONNXValue
    private(set) var nodes: [Onnx_NodeProto] = []
    private(set) var initializers: [Onnx_TensorProto] = []
    private var usedNames: Set<String>

    /// The name of the graph's single output value.
    static let outputName = "output"
    /// The symbolic name of the dynamic batch dimension.
    static let batchDimensionName = "batch"

    init(inputName: String, featureShape: [Int]) {
        input = ONNXValue(name: inputName, featureShape: featureShape)
        usedNames = [inputName, Self.outputName]
    }

    /// Stores `tensor` as a float32 initializer named `name` (made unique if
    /// taken) and returns the name nodes refer to it by.
    public mutating func addInitializer(_ name: String, _ tensor: Tensor) -> String {
        let unique = uniqueName(name)
        initializers.append(Self.tensorProto(tensor, name: unique))
        return unique
    }

    /// Stores `values` as an int64 initializer of `shape` (a Reshape's target
    /// shape, for example) and returns its name.
    public mutating func addInt64Initializer(_ name: String, _ values: [Int], shape: [Int]) -> String {
        precondition(shape.reduce(1, *) == values.count,
                     "addInt64Initializer(\(name)): \(values.count) values do not fill shape \(shape)")
        let unique = uniqueName(name)
        var proto = Onnx_TensorProto()
        proto.name = unique
        proto.dims = shape.map(Int64.init)
        proto.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        var bytes = Data(count: values.count * MemoryLayout<Int64>.size)
        bytes.withUnsafeMutableBytes { raw in
            for (index, value) in values.enumerated() {
                raw.storeBytes(of: Int64(value).littleEndian, toByteOffset: index * 8, as: Int64.self)
            }
        }
        proto.rawData = bytes
        initializers.append(proto)
        return unique
    }

    /// Appends one `opType` node of the default ONNX domain reading `inputs`
    /// and returns the name of its (single) output value.
    /// - Parameter path: the exporting layer's state-dict name, which prefixes the node's name.
    public mutating func addNode(_ opType: String, path: String, inputs: [String],
                                 attributes: [ONNXAttribute] = []) -> String {
        var node = Onnx_NodeProto()
        node.opType = opType
        node.name = uniqueName(path.isEmpty ? opType : "\(path)/\(opType)")
        node.input = inputs
        node.output = [uniqueName("\(node.name)_output")]
        node.attribute = attributes.map(\.proto)
        nodes.append(node)
        return node.output[0]
    }

    /// Appends `module`'s nodes, or throws `unsupportedLayer` naming it when it
    /// has no ONNX translation. Container modules call this for their children.
    public mutating func append(_ module: Module, input: ONNXValue, path: String) throws -> ONNXValue {
        guard let exportable = module as? any ONNXExportable else {
            throw ONNXExportError.unsupportedLayer(path: path, layer: module.description)
        }
        return try exportable.appendONNXNodes(to: &self, input: input, path: path)
    }

    private mutating func uniqueName(_ base: String) -> String {
        var name = base
        var suffix = 1
        while usedNames.contains(name) {
            name = "\(base)_\(suffix)"
            suffix += 1
        }
        usedNames.insert(name)
        return name
    }

    /// The finished graph: `result` becomes the output named "output", and the
    /// input and output are declared float32 with a symbolic batch dimension.
    func graph(name: String, output result: ONNXValue) -> Onnx_GraphProto {
        var nodes = nodes
        if result.name == input.name {
            // An empty model: ONNX needs a node between the input and the differently named output.
            var identity = Onnx_NodeProto()
            identity.opType = "Identity"
            identity.name = "Identity"
            identity.input = [input.name]
            identity.output = [Self.outputName]
            nodes.append(identity)
        } else {
            for index in nodes.indices {
                nodes[index].input = nodes[index].input.map { $0 == result.name ? Self.outputName : $0 }
                nodes[index].output = nodes[index].output.map { $0 == result.name ? Self.outputName : $0 }
            }
        }
        var graph = Onnx_GraphProto()
        graph.name = name
        graph.node = nodes
        graph.initializer = initializers
        graph.input = [Self.valueInfo(name: input.name, featureShape: input.featureShape)]
        graph.output = [Self.valueInfo(name: Self.outputName, featureShape: result.featureShape)]
        return graph
    }

    /// A float32 tensor declaration of shape ("batch", featureShape…).
    static func valueInfo(name: String, featureShape: [Int]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = batchDimensionName
        shape.dim = [batch] + featureShape.map { size in
            var dimension = Onnx_TensorShapeProto.Dimension()
            dimension.dimValue = Int64(size)
            return dimension
        }
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensorType.shape = shape
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensorType
        return info
    }

    /// A float32 TensorProto whose `raw_data` holds the scalars row-major and
    /// little-endian, as the format requires whatever the host's byte order.
    static func tensorProto(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dims = tensor.shape.map(Int64.init)
        proto.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var bytes = Data(count: tensor.scalarCount * MemoryLayout<UInt32>.size)
        bytes.withUnsafeMutableBytes { raw in
            tensor.withUnsafeBufferPointer { scalars in
                for (index, scalar) in scalars.enumerated() {
                    raw.storeBytes(of: scalar.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
                }
            }
        }
        proto.rawData = bytes
        return proto
    }
}

/// `name` inside the module at `path` ("1" + "weight" → "1.weight").
func childPath(_ path: String, _ name: String) -> String {
    path.isEmpty ? name : "\(path).\(name)"
}
