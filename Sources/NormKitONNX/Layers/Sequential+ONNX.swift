import NormKitNN

/// The layers one after another, each under its state-dict name ("layers.0", …).
extension Sequential: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        var value = input
        for (index, layer) in layers.enumerated() {
            value = try graph.append(layer, input: value, path: childPath(path, "layers.\(index)"))
        }
        return value
    }
}

/// fc1 → bn (when present) → ReLU → fc2 → softmax, with the names of its state dict.
extension SeedMLP: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        var value = try fc1.appendONNXNodes(to: &graph, input: input, path: childPath(path, "fc1"))
        if let bn { value = try bn.appendONNXNodes(to: &graph, input: value, path: childPath(path, "bn")) }
        value = graph.appendElementwise("Relu", input: value, path: childPath(path, "relu"))
        value = try fc2.appendONNXNodes(to: &graph, input: value, path: childPath(path, "fc2"))
        return try softmax.appendONNXNodes(to: &graph, input: value, path: childPath(path, "softmax"))
    }
}

extension ONNXGraphBuilder {
    /// Appends `module`'s nodes, or throws `unsupportedLayer` naming it when it
    /// has no ONNX translation. Container modules call this for their children.
    public mutating func append(_ module: Module, input: ONNXValue, path: String) throws -> ONNXValue {
        guard let exportable = module as? any ONNXExportable else {
            throw ONNXExportError.unsupportedLayer(path: path, layer: module.description)
        }
        return try exportable.appendONNXNodes(to: &self, input: input, path: path)
    }
}
