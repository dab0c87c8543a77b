import ArgumentParser
import NormKit

/// `--model FILE`: a seed model (MLP or CNN) saved by `normkit train --save` or by PyTorch.
struct ModelOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "A safetensors state dict of a seed model: `normkit train [--model cnn] --save FILE`, or PyTorch's "
            + "(SeedMLP's fc1/bn/fc2, or torch_cnn.py's nn.Sequential 0…12). The kind is read from the names.",
        valueName: "FILE"))
    var model: String

    /// The seed model in the file, loaded strictly, in inference mode.
    func load() throws -> SeedModel { try SeedModel(contentsOf: model) }

    /// Runs `body`, naming the model file when its images do not fit the model.
    func namingTheFile<R>(_ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as SeedModelError {
            throw ValidationError("\(model): \(error)")
        }
    }
}
