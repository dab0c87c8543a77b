import NormKitData
import NormKitIO
import NormKitNN

/// A trained seed model read from a safetensors state dict: the MLP or the CNN, told apart by the
/// names in the file, so that `normkit evaluate` and `normkit predict` take either without being told.
///
/// - `fc1.weight`, `fc2.weight` (and `bn.*`): `SeedMLP`, as `normkit train --save` writes it and as
///   PyTorch names the same module.
/// - `0.weight` … `12.weight`: `SeedCNN`, whose layers carry their `nn.Sequential` indices, so a
///   `state_dict()` of peers/torch_cnn.py's model loads as well as a `normkit train --model cnn --save` file.
///
/// The model is loaded strictly (every key, every shape) and left in inference mode. Images go in
/// as each model takes them: flat rows of pixels for the MLP, (N, 1, rows, columns) for the CNN.
public enum SeedModel {
    case mlp(SeedMLP)
    case cnn(SeedCNN)

    /// Reads the state dict in `path` and builds the seed model it holds.
    /// - Throws: `SafetensorsError` for a file that is not safetensors, `SeedModelError` for one
    ///   that holds neither seed model.
    public init(contentsOf path: String) throws {
        let state = try SafetensorsFile.read(path: path).stateDict
        do throws(StateDictError) {
            try self.init(state: state)
        } catch {
            throw SeedModelError.notASeedModel(path: path, reason: error)
        }
    }

    /// The seed model `state` describes, loaded from it, in inference mode.
    /// - Throws: `StateDictError` when `state` is not the whole state of a SeedMLP or a SeedCNN.
    public init(state: StateDict) throws(StateDictError) {
        if state["0.weight"] != nil || state["12.weight"] != nil {
            let model = try SeedCNN(shapedLike: state)
            try model.loadStateDict(state)
            self = .cnn(model)
        } else {
            // Also the answer for a state dict of neither model: the MLP's weights are what it lacks.
            let model = try SeedMLP(shapedLike: state)
            try model.loadStateDict(state)
            self = .mlp(model)
        }
        module.eval()
    }

    /// The model as a `Module`.
    public var module: Module {
        switch self {
        case .mlp(let model): model
        case .cnn(let model): model
        }
    }

    /// `mlp` or `cnn`, as `normkit train --model` spells them.
    public var kindName: String {
        switch self {
        case .mlp: "mlp"
        case .cnn: "cnn"
        }
    }

    /// The shape of one example as the model takes it, without the batch axis: (features) for
    /// the MLP, (channels, 4s, 4s) for the CNN, whose hidden layer takes s×s pooled planes (28×28
    /// for the seed CNN). What `normkit export-onnx` declares as the input.
    public var exampleShape: [Int] {
        switch self {
        case .mlp(let model):
            return [model.fc1.inFeatures ?? 0]
        case .cnn(let model):
            let side = 4 * Int((Double(model.fc1.inFeatures ?? 0) / 64).squareRoot())
            return [model.conv1.inChannels, side, side]
        }
    }

    /// The loss the model trains with: SeedMLP ends in softmax, so cross-entropy on probabilities;
    /// SeedCNN outputs logits, so cross-entropy on logits (PyTorch's `CrossEntropyLoss`).
    public var loss: any Loss {
        switch self {
        case .mlp: SparseCategoricalCrossentropy()
        case .cnn: CrossEntropyLoss()
        }
    }

    /// `images` as the model takes them: flat rows of `rows·columns` pixels for the MLP,
    /// (1, rows, columns) images for the CNN (`LabeledImages.channelsFirst`).
    /// - Throws: `SeedModelError.imagesDoNotFit` when the model was trained on another image size.
    public func inputs(_ images: LabeledImages) throws(SeedModelError) -> any BatchSource {
        switch self {
        case .mlp(let model):
            guard images.featureCount == model.fc1.inFeatures else {
                throw .imagesDoNotFit(model: "SeedMLP", expected: "\(model.fc1.inFeatures ?? 0) pixels per image",
                                      rows: images.rows, columns: images.columns)
            }
            return images
        case .cnn(let model):
            guard model.acceptsImages(rows: images.rows, columns: images.columns) else {
                let side = Int((Double(model.fc1.inFeatures ?? 0) / 64).squareRoot())
                throw .imagesDoNotFit(model: "SeedCNN", expected: "\(4 * side)×\(4 * side) images (or any size that "
                                        + "two 2×2 poolings take to \(side)×\(side))",
                                      rows: images.rows, columns: images.columns)
            }
            return images.channelsFirst
        }
    }

    /// The number of classes the model scores: the width of its output (`fc2`'s out features).
    public var classCount: Int {
        switch self {
        case .mlp(let model): model.fc2.outFeatures
        case .cnn(let model): model.fc2.outFeatures
        }
    }

    /// Loss (the model's own, see `loss`) and accuracy on `images`, in inference mode.
    /// - Throws: `SeedModelError.imagesDoNotFit` for images of another size, and
    ///   `.labelsOutOfRange` when a label is not one of the model's classes — checked before
    ///   anything runs, because the loss would stop the process on such a label.
    public func evaluate(_ images: LabeledImages, batchSize: Int = 1000) throws -> Evaluation {
        let data = try inputs(images)
        guard images.classCount <= classCount else {
            throw SeedModelError.labelsOutOfRange(classes: classCount, largestLabel: images.classCount - 1)
        }
        module.compile(optimizer: Adam(), loss: loss)
        return try module.evaluate(data, batchSize: batchSize)
    }

    /// The predicted class (arg-max output) of every image, in order, in inference mode.
    public func predictedClasses(_ images: LabeledImages, batchSize: Int = 1000) throws -> [Int] {
        try module.predict(inputs(images), batchSize: batchSize).argmax(axis: -1)
    }
}

/// Why a model file cannot be used as a seed model.
public enum SeedModelError: Error, Sendable, CustomStringConvertible {
    /// The file is safetensors, but its state dict is neither SeedMLP's nor SeedCNN's.
    case notASeedModel(path: String, reason: StateDictError)
    /// The model was trained on images of another size.
    case imagesDoNotFit(model: String, expected: String, rows: Int, columns: Int)
    /// The labels name a class the model does not score (it outputs `classes` values per image).
    case labelsOutOfRange(classes: Int, largestLabel: Int)

    public var description: String {
        switch self {
        case let .notASeedModel(path, reason):
            "\(path): not a seed model (SeedMLP: fc1, bn, fc2; SeedCNN: 0 … 12 as in peers/torch_cnn.py). \(reason)"
        case let .imagesDoNotFit(model, expected, rows, columns):
            "the \(model) takes \(expected), the images are \(rows)×\(columns)"
        case let .labelsOutOfRange(classes, largestLabel):
            "the model scores classes 0..<\(classes), but the labels include \(largestLabel)"
        }
    }
}
