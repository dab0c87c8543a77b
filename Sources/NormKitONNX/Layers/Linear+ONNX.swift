import NormKitNN

/// Linear → `Gemm(X, W, b)` with transB = 1: NormKit stores W as (out, in) like
/// PyTorch, and Gemm computes X·Wᵀ + b with it as stored. Without a bias the
/// optional third input is left out.
extension Linear: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        guard let inFeatures, let weight else { throw ONNXExportError.unbuiltLayer(path: path, layer: description) }
        guard input.featureShape == [inFeatures] else {
            throw ONNXExportError.shapeMismatch(path: path, layer: description, expected: "(batch, \(inFeatures))",
                                                got: input.featureShape)
        }
        var inputs = [input.name, graph.addInitializer(childPath(path, "weight"), weight.value)]
        if let bias { inputs.append(graph.addInitializer(childPath(path, "bias"), bias.value)) }
        let output = graph.addNode("Gemm", path: path, inputs: inputs, attributes: [.int("transB", 1)])
        return ONNXValue(name: output, featureShape: [outFeatures])
    }
}
