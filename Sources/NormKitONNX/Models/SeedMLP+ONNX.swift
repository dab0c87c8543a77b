import NormKitNN

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
