import Foundation
import NormKitNN

/// Writes a NormKit model as an ONNX file (https://onnx.ai) for ONNX Runtime
/// and the rest of the ecosystem.
///
/// The graph computes the model's `.inference` behaviour whatever mode the
/// model is in: batch norm uses its running estimates. The input is named
/// "input", float32 of shape (batch, inputShape…) with a symbolic batch
/// dimension; the output is named "output". Initializers carry the model's
/// state-dict names ("0.weight", "1.running_var", …).
///
/// Exportable: `Sequential` (nested too), `SeedMLP` and `SeedCNN`, made of Linear/Dense,
/// BatchNorm/BatchNorm1d/2d/3d/BatchNormalization, LayerNorm, GroupNorm,
/// InstanceNorm1d/2d/3d, Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D,
/// Dropout (the identity in inference), ReLU, Sigmoid, Tanh, Softmax and Flatten. Anything
/// else throws `ONNXExportError` naming the layer; a custom layer can conform
/// to `ONNXExportable`.
public struct ONNXExporter: Sendable {
    /// The ONNX operator set the graph binds against (ONNX 1.12, 2022; every
    /// operator used here has had its current definition since opset 15 or earlier).
    public static let opsetVersion = 17
    /// The IR version that goes with opset 17.
    public static let irVersion = 8

    /// Written as the model's producer_name.
    public var producerName: String

    public init(producerName: String = "NormKit") {
        self.producerName = producerName
    }

    /// The serialized ONNX model.
    /// - Parameter inputShape: the input's dimensions without the batch axis, as in
    ///   `Sequential(inputShape:)`: [784] for flat images, [1, 28, 28] for channels-first ones.
    public func modelData(for model: Module, inputShape: [Int]) throws -> Data {
        try modelProto(for: model, inputShape: inputShape).serializedBytes()
    }

    /// Writes the ONNX model to `url`, atomically (a temporary file, then a rename).
    public func export(_ model: Module, to url: URL, inputShape: [Int]) throws {
        try modelData(for: model, inputShape: inputShape).write(to: url, options: .atomic)
    }

    func modelProto(for model: Module, inputShape: [Int]) throws -> Onnx_ModelProto {
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else {
            throw ONNXExportError.invalidInputShape(inputShape)
        }
        var builder = ONNXGraphBuilder(inputName: "input", featureShape: inputShape)
        let output = try builder.append(model, input: builder.input, path: "")

        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Int64(Self.opsetVersion)
        var proto = Onnx_ModelProto()
        proto.irVersion = Int64(Self.irVersion)
        proto.opsetImport = [opset]
        proto.producerName = producerName
        proto.graph = builder.graph(name: String(describing: type(of: model)), output: output)
        return proto
    }
}

extension Module {
    /// Writes this model as an ONNX file; see `ONNXExporter`.
    /// - Parameter inputShape: the input's dimensions without the batch axis ([784]).
    public func exportONNX(to url: URL, inputShape: [Int]) throws {
        try ONNXExporter().export(self, to: url, inputShape: inputShape)
    }
}
