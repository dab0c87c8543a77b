import NormKitNN

/// Its children in order, under PyTorch's nn.Sequential indices ("0", "1", …), which is its forward.
extension SeedCNN: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        try namedChildren().reduce(input) { value, child in
            try graph.append(child.1, input: value, path: childPath(path, child.0))
        }
    }
}
