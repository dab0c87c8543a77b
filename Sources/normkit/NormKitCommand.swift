import ArgumentParser
import NormKit

@main
struct NormKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "normkit",
        abstract: "Batch normalization and the neural-network training around it.",
        subcommands: [Train.self, Evaluate.self, Predict.self, StudyCommand.self, ExportONNX.self],
        defaultSubcommand: Train.self
    )

    static func main() {
        // While the process has one thread: loading OpenBLAS briefly changes the environment.
        OpenBLAS.loadEarly()
        main(nil)
    }
}
