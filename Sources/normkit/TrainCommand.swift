import ArgumentParser
import Foundation
import NormKit
import NormKitStudy

/// The models `normkit train` can train.
enum TrainModel: String, ExpressibleByArgument, CaseIterable {
    /// SeedMLP: 784 → Linear 64 → BatchNorm → ReLU → Linear 10 → softmax.
    case mlp
    /// SeedCNN: two Conv-BatchNorm-ReLU-MaxPool blocks, Linear 3136 → 128 → BatchNorm → ReLU → Linear 10.
    case cnn

    var defaultBatchSize: Int { self == .mlp ? 32 : 64 }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the seed MLP or the small BatchNorm CNN on Fashion-MNIST.",
        discussion: """
            mlp: 784 → Linear 64 → BatchNorm → ReLU → Linear 10 → softmax, sparse categorical cross-entropy. \
            cnn: Conv 1→32 3×3 pad 1, BN, ReLU, MaxPool 2; Conv 32→64 3×3 pad 1, BN, ReLU, MaxPool 2; \
            Flatten; Linear 3136→128, BN, ReLU; Linear 128→10, cross-entropy on the logits (PyTorch's \
            peers/torch_cnn.py). Adam (learning rate 1e-3), shuffled each epoch. \
            Without --data it uses the Fashion-MNIST slice embedded in NormKit (10,000 training and \
            2,000 test images). The last line is `test_accuracy=…` for scripts.
            """
    )

    @Option(help: "A directory of MNIST-format IDX files (train-images-idx3-ubyte[.gz], …), e.g. /usr/share/datasets/fashion-mnist.")
    var data: String?

    @Option(parsing: .unconditional, help: "Passes over the training set.")
    var epochs = 5

    @Option(help: "The model: mlp (the seed model) or cnn (the small convolutional network).")
    var model: TrainModel = .mlp

    @Option(parsing: .unconditional, help: "Examples per training step (default: 32 for mlp, 64 for cnn).")
    var batchSize: Int?

    @Option(parsing: .unconditional, help: "Adam's learning rate.")
    var learningRate: Float = 1e-3

    @Option(parsing: .unconditional, help: "Seed for initial weights and shuffling.")
    var seed: UInt64 = 0

    @Flag(help: "Leave out the batch-normalization layers (the comparison model).")
    var noBatchnorm = false

    @Option(help: ArgumentHelp("Save a checkpoint (model, optimizer, epoch, random state) into DIR after every epoch.",
                               valueName: "DIR"))
    var checkpoint: String?

    @Flag(help: "Continue from the latest checkpoint in --checkpoint DIR (from epoch 1 if DIR has none); the checkpoint's weights, optimizer state and learning rate replace the fresh ones.")
    var resume = false

    @Option(help: ArgumentHelp("Write the trained model (safetensors, PyTorch names) to FILE.", valueName: "FILE"))
    var save: String?

    @Option(help: "Write training and test loss and accuracy per epoch to this SVG file.")
    var plot: String?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if resume && checkpoint == nil { throw ValidationError("--resume needs --checkpoint DIR to resume from") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        let batchSize = batchSize ?? model.defaultBatchSize
        guard batchSize >= 2 else { throw ValidationError("--batch-size must be at least 2 (batch norm needs two values per feature), got \(batchSize)") }
        guard learningRate > 0 else { throw ValidationError("--learning-rate must be positive, got \(learningRate)") }
        // Both files are written after training: a directory that is not there would lose the whole run.
        if let save { try checkWritableDestination(save, option: "--save") }
        if let plot { try checkWritableDestination(plot, option: "--plot") }
    }

    func run() throws {
        compute.apply()
        let dataset = try data.map { try MNISTDataset.load(directory: $0) } ?? MNISTDataset.embeddedFashionMNIST()
        print("data: \(data ?? "embedded Fashion-MNIST slice"): \(dataset.train.count) training, \(dataset.test.count) test images; threads: \(Threading.count)")

        GlobalRandom.seed(seed)
        let batchSize = batchSize ?? model.defaultBatchSize
        // Every label of either set must be a class the model scores: a test label beyond the
        // training labels would otherwise stop the process in the first validation, after an epoch.
        let classes = max(dataset.train.classCount, dataset.test.classCount, 10)
        let network: Module
        let trainingData: any BatchSource, testData: any BatchSource
        switch model {
        case .mlp:
            network = SeedMLP(inputFeatures: dataset.train.featureCount, classes: classes, batchNorm: !noBatchnorm)
            network.compile(optimizer: Adam(learningRate: learningRate), loss: .sparseCategoricalCrossentropy,
                            metrics: [.accuracy])
            (trainingData, testData) = (dataset.train, dataset.test)
        case .cnn:
            network = SeedCNN(imageSize: Size2D(dataset.train.rows, dataset.train.columns), classes: classes,
                              batchNorm: !noBatchnorm)
            network.compile(optimizer: Adam(learningRate: learningRate), loss: .crossEntropy, metrics: [.accuracy])
            (trainingData, testData) = (dataset.train.channelsFirst, dataset.test.channelsFirst)
        }
        print(network.summary())
        // A last batch of one example cannot be batch-normalized in training: drop it, as PyTorch's drop_last would.
        let dropLast = !noBatchnorm && dataset.train.count % batchSize == 1
        let shuffling = SeededGenerator(seed: seed &+ 1)
        let history: History
        if let checkpoint {
            let checkpoints = CheckpointDirectory(path: checkpoint)
            if resume {
                print(checkpoints.latestPath().map { "resuming from \($0)" } ?? "no checkpoint in \(checkpoint): starting at epoch 1")
            }
            history = try network.fit(trainingData, epochs: epochs, batchSize: batchSize, dropsLastPartialBatch: dropLast,
                                      validationData: testData, generator: shuffling, checkpoints: checkpoints,
                                      resume: resume).history
        } else {
            history = try network.fit(trainingData, epochs: epochs, batchSize: batchSize, dropsLastPartialBatch: dropLast,
                                      validationData: testData, generator: shuffling)
        }
        let seconds = history.epochSeconds
        let mean = seconds.reduce(0, +) / Double(max(seconds.count, 1))
        print("seconds_per_epoch=\(fixed(mean, 3)) (min \(fixed(seconds.min() ?? 0, 3)))")
        if let save {
            try network.save(to: save)
            print("saved: \(save)")
        }
        let result = try network.evaluate(testData)
        print("test_loss=\(fixed(result.loss, 4))")
        if let plot { try TrainingPlot.write(history, to: plot) }
        print("test_accuracy=\(fixed(result.accuracy, 4))")
    }
}

/// Throws unless `path`'s directory exists and is writable, naming `option` and the directory,
/// so that an output written at the end of a long run fails before the run instead.
func checkWritableDestination(_ path: String, option: String) throws {
    let directory = (path as NSString).deletingLastPathComponent
    let folder = directory.isEmpty ? "." : directory
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("\(option) \(path): the directory \(folder) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: folder) else {
        throw ValidationError("\(option) \(path): the directory \(folder) is not writable")
    }
}
