import NormKitNN

extension ONNXGraphBuilder {
    /// One shape-preserving elementwise operator.
    mutating func appendElementwise(_ opType: String, input: ONNXValue, path: String) -> ONNXValue {
        ONNXValue(name: addNode(opType, path: path, inputs: [input.name]), featureShape: input.featureShape)
    }
}

extension ReLU: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        graph.appendElementwise("Relu", input: input, path: path)
    }
}

extension Sigmoid: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        graph.appendElementwise("Sigmoid", input: input, path: path)
    }
}

extension Tanh: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        graph.appendElementwise("Tanh", input: input, path: path)
    }
}

/// Softmax over the last axis. Since opset 13 ONNX's Softmax normalizes along
/// the one `axis` given (before, it flattened every axis from `axis` on); the
/// attribute is written out even though −1 is its default.
extension Softmax: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let output = graph.addNode("Softmax", path: path, inputs: [input.name], attributes: [.int("axis", -1)])
        return ONNXValue(name: output, featureShape: input.featureShape)
    }
}

/// (batch, d1, d2, …) → (batch, d1·d2·…): ONNX's Flatten with axis 1.
extension Flatten: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        let output = graph.addNode("Flatten", path: path, inputs: [input.name], attributes: [.int("axis", 1)])
        return ONNXValue(name: output, featureShape: [input.featureShape.reduce(1, *)])
    }
}
