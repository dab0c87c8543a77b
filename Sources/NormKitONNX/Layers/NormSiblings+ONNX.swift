import NormKitCore
import NormKitNN

/// LayerNorm → ONNX `LayerNormalization` (new in opset 17) over the last
/// `normalizedShape.count` axes: axis = −count, epsilon, float32 statistics
/// (stash_type 1, the default). Scale is required by ONNX (ones without γ); B
/// is left out without β.
extension LayerNorm: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        guard let normalizedShape else { throw ONNXExportError.unbuiltLayer(path: path, layer: description) }
        guard input.featureShape.count >= normalizedShape.count,
              Array(input.featureShape.suffix(normalizedShape.count)) == normalizedShape else {
            throw ONNXExportError.shapeMismatch(
                path: path, layer: description,
                expected: "(batch, …, \(normalizedShape.map(String.init).joined(separator: ", ")))", got: input.featureShape)
        }
        var inputs = [input.name, graph.addInitializer(childPath(path, "weight"), weight?.value ?? .ones(normalizedShape))]
        if let bias { inputs.append(graph.addInitializer(childPath(path, "bias"), bias.value)) }
        let output = graph.addNode("LayerNormalization", path: path, inputs: inputs,
                                   attributes: [.int("axis", -normalizedShape.count), .float("epsilon", epsilon)])
        return ONNXValue(name: output, featureShape: input.featureShape)
    }
}

/// GroupNorm, in opset 17 operators (GroupNormalization arrived in opset 18 and
/// changed meaning in 21): Reshape (N, C, S…) → (N, G, C/G·∏S), an
/// InstanceNormalization with unit scale and zero bias (statistics per
/// (sample, group)), Reshape back, then Mul by γ and Add β shaped (C, 1, …, 1)
/// to broadcast per channel. PyTorch's exporter decomposes it the same way
/// before opset 18. The Reshape targets copy the batch size (0) from the input.
extension GroupNorm: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        guard input.featureShape.first == channelCount else {
            throw ONNXExportError.shapeMismatch(path: path, layer: description, expected: "(batch, \(channelCount), …)",
                                                got: input.featureShape)
        }
        let grouped = graph.addInt64Initializer(childPath(path, "grouped_shape"), [0, groupCount, -1], shape: [3])
        var value = graph.addNode("Reshape", path: path, inputs: [input.name, grouped])
        let unitScale = graph.addInitializer(childPath(path, "group_scale"), .ones([groupCount]))
        let zeroBias = graph.addInitializer(childPath(path, "group_bias"), .zeros([groupCount]))
        value = graph.addNode("InstanceNormalization", path: path, inputs: [value, unitScale, zeroBias],
                              attributes: [.float("epsilon", epsilon)])
        let original = graph.addInt64Initializer(childPath(path, "shape"), [0] + input.featureShape,
                                                 shape: [input.rank])
        value = graph.addNode("Reshape", path: path, inputs: [value, original])
        if let weight, let bias {
            let perChannel = [channelCount] + [Int](repeating: 1, count: input.featureShape.count - 1)
            let gamma = graph.addInitializer(childPath(path, "weight"), weight.value.reshaped(perChannel))
            let beta = graph.addInitializer(childPath(path, "bias"), bias.value.reshaped(perChannel))
            value = graph.addNode("Mul", path: path, inputs: [value, gamma])
            value = graph.addNode("Add", path: path, inputs: [value, beta])
        }
        return ONNXValue(name: value, featureShape: input.featureShape)
    }
}

/// InstanceNorm1d/2d/3d. Without running estimates (the default) it normalizes
/// with each instance's statistics in inference too: ONNX
/// `InstanceNormalization` (scale 1 and B 0 without affine). With
/// `tracksRunningStatistics`, inference normalizes every instance with the
/// running estimates, which is exactly `BatchNormalization` in inference form.
extension InstanceNorm: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        guard input.featureShape.count == spatialRank + 1, input.featureShape[0] == featureCount else {
            throw ONNXExportError.shapeMismatch(path: path, layer: description,
                                                expected: "(batch, \(featureCount), \(spatialRank) spatial axes)",
                                                got: input.featureShape)
        }
        if tracksRunningStatistics, let runningMean, let runningVariance {
            return graph.appendBatchNormalization(
                input: input, featureAxis: 1, path: path,
                statistics: RunningStatistics(mean: runningMean, variance: runningVariance, runningAverage: runningAverage),
                weight: weight?.value, bias: bias?.value, epsilon: epsilon)
        }
        let scale = graph.addInitializer(childPath(path, "weight"), weight?.value ?? .ones([featureCount]))
        let shift = graph.addInitializer(childPath(path, "bias"), bias?.value ?? .zeros([featureCount]))
        let output = graph.addNode("InstanceNormalization", path: path, inputs: [input.name, scale, shift],
                                   attributes: [.float("epsilon", epsilon)])
        return ONNXValue(name: output, featureShape: input.featureShape)
    }
}
