import ArgumentParser
import NormKit

/// `--model FILE`: a seed model saved by `normkit train --save` or by PyTorch (`fc1`, `bn`, `fc2`).
struct ModelOptions: ParsableArguments {
    @Option(help: "A safetensors state dict of the seed model (from `normkit train --save`, or PyTorch's fc1/bn/fc2).")
    var model: String

    /// The seed model, shaped like the file and loaded from it (strictly), in inference mode.
    func load() throws -> SeedMLP {
        let state = try SafetensorsFile.read(path: model).stateDict
        do {
            let seedModel = try SeedMLP(shapedLike: state)
            try seedModel.loadStateDict(state)
            seedModel.eval()
            return seedModel
        } catch {
            throw ModelFileMismatch(path: model, error: error)
        }
    }
}

/// A readable model file that is not a seed model: the state-dict error, prefixed with the file.
struct ModelFileMismatch: Error, CustomStringConvertible {
    let path: String
    let error: StateDictError
    var description: String { "\(path): not a seed model (fc1, bn, fc2). \(error)" }
}
