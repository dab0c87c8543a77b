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
            Input "input": float32, pixels scaled to [0, 1] as in training: (batch, features) for the \
            MLP, (batch, 1, 28, 28) for the CNN; output "output": the MLP's class probabilities, the \
            CNN's logits. Opset 17.
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Where to write the ONNX model (e.g. model.onnx); an existing file is replaced atomically.")
    var output: String

    func run() throws {
        let model = try modelOptions.load()
        try model.module.exportONNX(to: URL(fileURLWithPath: output), inputShape: model.exampleShape)
        print("wrote \(output)")
    }
}
