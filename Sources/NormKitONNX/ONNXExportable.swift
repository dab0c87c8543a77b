/// A module that can write itself into an ONNX inference graph.
///
/// NormKit's own layers conform in this target (see Layers/); adding a layer
/// is one `appendONNXNodes` that adds its initializers and nodes and returns
/// its output. A custom module can conform the same way.
public protocol ONNXExportable {
    /// Appends the nodes that compute this module in inference mode.
    /// - Parameters:
    ///   - graph: the graph being built.
    ///   - input: the value this module receives: (batch, `input.featureShape`…).
    ///   - path: this module's state-dict name inside the exported model ("1", "fc1";
    ///     "" for the model itself); prefix initializer names with it.
    /// - Returns: the value this module produces.
    /// - Throws: `ONNXExportError` when the module cannot be expressed or the shape does not fit.
    func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue
}
