import ArgumentParser
import Foundation
import NormKit
import NormKitONNX

struct ExportONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-onnx",
        abstract: "Write a saved seed model as an ONNX file (for ONNX Runtime and other ONNX tools).",
        discussion: """
            The graph computes the model in inference mode: batch norm uses its running estimates. \
            Input "input": float32 (batch, features), pixels scaled to [0, 1] as in training; \
            output "output": the class probabilities. Opset 17.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Where to write the ONNX model (e.g. model.onnx); an existing file is replaced atomically.")
    var output: String

    func run() throws {
        let model = try modelOptions.load()
        try model.exportONNX(to: URL(fileURLWithPath: output), inputShape: [model.fc1.inFeatures!])
        print("wrote \(output)")
    }
}
