import NormKitNN

/// The layers one after another, each under its state-dict name ("0", "1", …, as in PyTorch's nn.Sequential).
extension Sequential: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        try namedChildren().reduce(input) { value, child in
            try graph.append(child.1, input: value, path: childPath(path, child.0))
        }
    }
}
