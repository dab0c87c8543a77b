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
