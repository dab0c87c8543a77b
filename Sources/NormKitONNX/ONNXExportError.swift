/// Why a model could not be exported to ONNX.
public enum ONNXExportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The model, or one of its layers, has no ONNX translation.
    /// `path` is the layer's state-dict name ("" for the model itself).
    case unsupportedLayer(path: String, layer: String)
    /// A lazily built layer (Keras' `Dense(64)`) has no parameters yet.
    case unbuiltLayer(path: String, layer: String)
    /// The shape reaching a layer is not one it accepts (dimensions without the batch axis).
    case shapeMismatch(path: String, layer: String, expected: String, got: [Int])
    /// A batch-norm layer normalizes with batch statistics even in inference, which an
    /// ONNX inference graph cannot express.
    case batchStatisticsInInference(path: String, layer: String)
    /// `inputShape` must list positive feature dimensions (the batch axis is left out).
    case invalidInputShape([Int])

    public var description: String {
        switch self {
        case let .unsupportedLayer(path, layer) where path.isEmpty:
            "ONNX export: \(layer) cannot be exported. NormKit exports Sequential models (and SeedMLP, SeedCNN) whose layers "
                + "it knows: \(ONNXExportError.exportableLayers). A custom Module subclass has a forward(_:) "
                + "NormKit cannot trace: rebuild it as a Sequential, or conform it to ONNXExportable."
        case let .unsupportedLayer(path, layer):
            "ONNX export: layer \(path) (\(layer)) has no ONNX translation. Exportable layers: "
                + "\(ONNXExportError.exportableLayers); conform the layer to ONNXExportable to add one."
        case let .unbuiltLayer(path, layer):
            "ONNX export: layer \(path.isEmpty ? "<model>" : path) (\(layer)) has no parameters yet. Build the model "
                + "first (Sequential(inputShape:), build(inputShape:), or one forward pass)."
        case let .shapeMismatch(path, layer, expected, got):
            "ONNX export: layer \(path.isEmpty ? "<model>" : path) (\(layer)) expects input \(expected), "
                + "got (batch, \(got.map(String.init).joined(separator: ", ")))."
        case let .batchStatisticsInInference(path, layer):
            "ONNX export: layer \(path) (\(layer)) normalizes with batch statistics in inference "
                + "(tracksRunningStatistics is false, or statistics is .batch); an ONNX inference graph uses "
                + "running statistics only."
        case let .invalidInputShape(shape):
            "ONNX export: inputShape must list positive dimensions without the batch axis "
                + "(e.g. [784] or [1, 28, 28]), got \(shape)."
        }
    }

    static let exportableLayers = "Linear/Dense, BatchNorm/BatchNorm1d/2d/3d/BatchNormalization, LayerNorm, GroupNorm, "
        + "InstanceNorm1d/2d/3d, Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D, Dropout, ReLU, Sigmoid, Tanh, "
        + "Softmax, Flatten, nested Sequential"
}
