import ArgumentParser
import NormKit

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a saved seed model (MLP or CNN) on the test set.",
        discussion: "Prints `test_loss=…` and `test_accuracy=…` (inference mode: running statistics)."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "A directory of MNIST-format IDX files (default: the Fashion-MNIST slice embedded in NormKit).")
    var data: String?

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        compute.apply()
        let model = try modelOptions.load()
        let dataset = try data.map { try MNISTDataset.load(directory: $0) } ?? MNISTDataset.embeddedFashionMNIST()
        // Each model's own loss: cross-entropy on the MLP's probabilities, on the CNN's logits.
        let result = try modelOptions.namingTheFile { try model.evaluate(dataset.test) }
        print("model: \(modelOptions.model) (\(model.kindName)); data: \(data ?? "embedded Fashion-MNIST slice"): \(dataset.test.count) test images")
        print("test_loss=\(fixed(result.loss, 4))")
        print("test_accuracy=\(fixed(result.accuracy, 4))")
    }
}
