import NormKitCore
import NormKitNN

/// Batch norm → ONNX `BatchNormalization` in inference form:
/// y = scale·(x − input_mean)/√(input_var + epsilon) + B, the formula NormKit's
/// `.inference` mode computes, with the running estimates as input_mean and
/// input_var.
///
/// - The running variance is written as stored. Whether it was accumulated
///   unbiased (PyTorch, `BatchNorm1d`) or biased (Keras, ONNX's own training
///   mode) only changes how it was estimated, not how inference uses it, so no
///   conversion is needed; PyTorch's exporter does the same.
/// - `momentum` is informative in an inference graph (it matters only with
///   training_mode = 1). ONNX's momentum weights the old value:
///   `.newBatchWeight(w)` is written as 1 − w, `.oldValueWeight(m)` as m, and
///   `.cumulativeAverage`, which ONNX cannot express, leaves it out.
/// - Without affine parameters, scale = 1 and B = 0 are written (ONNX requires both).
/// - ONNX normalizes over axis 1. A layer whose features sit elsewhere (Keras'
///   channels-last axis −1 on rank > 2) is wrapped in two Transposes.
extension BatchNorm: ONNXExportable {
    public func appendONNXNodes(to graph: inout ONNXGraphBuilder, input: ONNXValue, path: String) throws -> ONNXValue {
        guard let featureCount else { throw ONNXExportError.unbuiltLayer(path: path, layer: description) }
        guard tracksRunningStatistics, statistics != .batch, let runningMean, let runningVariance else {
            throw ONNXExportError.batchStatisticsInInference(path: path, layer: description)
        }
        let rank = input.rank
        let axis = featureAxis < 0 ? featureAxis + rank : featureAxis
        guard axis >= 1, axis < rank, input.featureShape[axis - 1] == featureCount else {
            throw ONNXExportError.shapeMismatch(path: path, layer: description,
                                                expected: "with \(featureCount) features on axis \(featureAxis)",
                                                got: input.featureShape)
        }
        return graph.appendBatchNormalization(
            input: input, featureAxis: axis, path: path,
            statistics: RunningStatistics(mean: runningMean, variance: runningVariance, runningAverage: runningAverage),
            weight: weight?.value, bias: bias?.value, epsilon: epsilon)
    }
}

/// The running estimates a layer normalizes with in inference.
struct RunningStatistics {
    let mean: Tensor
    let variance: Tensor
    let runningAverage: RunningAverage
}

extension ONNXGraphBuilder {
    /// One `BatchNormalization` over `featureAxis` (inside two Transposes when it is not 1)
    /// with initializers `path.weight`, `path.bias`, `path.running_mean`, `path.running_var`.
    mutating func appendBatchNormalization(input: ONNXValue, featureAxis axis: Int, path: String,
                                           statistics: RunningStatistics, weight: Tensor?, bias: Tensor?,
                                           epsilon: Float) -> ONNXValue {
        let featureCount = statistics.mean.scalarCount
        let scale = addInitializer(childPath(path, "weight"), weight ?? .ones([featureCount]))
        let shift = addInitializer(childPath(path, "bias"), bias ?? .zeros([featureCount]))
        let mean = addInitializer(childPath(path, "running_mean"), statistics.mean)
        let variance = addInitializer(childPath(path, "running_var"), statistics.variance)
        var attributes: [ONNXAttribute] = [.float("epsilon", epsilon)]
        switch statistics.runningAverage {
        case .newBatchWeight(let w): attributes.append(.float("momentum", 1 - w))
        case .oldValueWeight(let m): attributes.append(.float("momentum", m))
        case .cumulativeAverage: break
        }

        // Move the feature axis to 1 and back: perm lists the source axis of each output axis.
        let rank = input.rank
        let toChannelsFirst = [0, axis] + (1..<rank).filter { $0 != axis }
        var normalized = input.name
        if axis != 1 {
            normalized = addNode("Transpose", path: path, inputs: [normalized], attributes: [.ints("perm", toChannelsFirst)])
        }
        normalized = addNode("BatchNormalization", path: path, inputs: [normalized, scale, shift, mean, variance],
                             attributes: attributes)
        if axis != 1 {
            var back = [Int](repeating: 0, count: rank)
            for (target, source) in toChannelsFirst.enumerated() { back[source] = target }
            normalized = addNode("Transpose", path: path, inputs: [normalized], attributes: [.ints("perm", back)])
        }
        return ONNXValue(name: normalized, featureShape: input.featureShape)
    }
}
