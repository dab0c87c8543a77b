// Exported models run in ONNX Runtime (from PyPI, through Support/run_onnxruntime.py,
// after the ONNX checker) and give NormKit's own inference outputs within 1e-5.

import Foundation
import NormKitCore
import NormKitNN
@testable import NormKitONNX
import Testing

@Suite("ONNX Runtime reproduces NormKit's inference outputs")
struct ONNXRuntimeTests {
    @Test("MLPs (BN folded or not), a Keras-style model, SeedMLP, norm siblings, CNNs: ONNX Runtime equals predict within 1e-5")
    func onnxRuntimeMatchesPredict() throws {
        // Dense → BN → ReLU → Dense → Softmax on Fashion-MNIST images, BN with
        // running statistics from six training-mode batches and γ, β ≠ 1, 0.
        let mlp = Sequential {
            Linear(784, 32, generator: SeededGenerator(seed: 1))
            BatchNorm1d(32)
            ReLU()
            Linear(32, 10, generator: SeededGenerator(seed: 2))
            Softmax()
        }
        try warmUpRunningStatistics(mlp, batches: (0..<6).map { try fashionImages(32, offset: 32 * $0) })
        setNonTrivialAffine(mlp)
        let images = try fashionImages(16, test: true)
        // The same MLP with its batch norm folded into the Linear before it.
        mlp.eval()
        let folded = try mlp.foldingBatchNorms()

        // Keras spelling: channels-last BN on (batch, 5, 3) (exported through
        // Transposes), Flatten, a bias-free Dense, Tanh, BN with the biased
        // variance, ε 1e-3 and β only (scale: false, so ONNX gets scale 1), Sigmoid.
        let keras = Sequential(inputShape: [5, 3]) {
            BatchNormalization()
            Flatten()
            Linear(outFeatures: 8, bias: false, generator: SeededGenerator(seed: 3))
            Tanh()
            BatchNormalization(momentum: 0.9, scale: false)
            Sigmoid()
        }
        try warmUpRunningStatistics(keras, batches: (0..<4).map { randomTensor([12, 5, 3], seed: 10 + UInt64($0)) })
        setNonTrivialAffine(keras)
        let kerasInput = randomTensor([7, 5, 3], seed: 20)

        let seed = SeedMLP(inputFeatures: 784, hiddenFeatures: 16, classes: 10)
        try warmUpRunningStatistics(seed, batches: (0..<3).map { try fashionImages(32, offset: 200 + 32 * $0) })
        setNonTrivialAffine(seed)

        // LayerNorm, GroupNorm (on images and on features) and InstanceNorm with
        // and without running estimates, on (batch, 6, 4, 5).
        let siblings = Sequential {
            GroupNorm(groupCount: 3, channelCount: 6)
            InstanceNorm2d(6, affine: true)
            Tanh()
            InstanceNorm2d(6, affine: true, tracksRunningStatistics: true)
            LayerNorm(normalizedShape: [4, 5])
            Flatten()
            LayerNorm(120, bias: false)
            GroupNorm(groupCount: 4, channelCount: 120)
            Linear(120, 5, generator: SeededGenerator(seed: 4))
        }
        try warmUpRunningStatistics(siblings, batches: (0..<3).map { randomTensor([4, 6, 4, 5], seed: 30 + UInt64($0)) })
        setNonTrivialAffine(siblings)
        let siblingsInput = randomTensor([3, 6, 4, 5], seed: 40)

        // A CNN with every convolution and pooling option the exporter writes:
        // padding, asymmetric kernel and stride, dilation, groups, count_include_pad,
        // a dilated max pool, Dropout (nothing in inference) and global average pooling.
        let cnn = Sequential {
            Conv2D(1, 4, kernelSize: 3, padding: 1, generator: SeededGenerator(seed: 5))
            BatchNorm2d(4)
            ReLU()
            MaxPool2D(2)
            Conv2D(4, 6, kernelSize: [3, 2], stride: [1, 2], padding: [1, 0], dilation: [2, 1], groups: 2,
                   generator: SeededGenerator(seed: 6))
            AvgPool2D(3, stride: 2, padding: 1, countsPadding: false)
            Dropout(0.3, generator: SeededGenerator(seed: 7))
            MaxPool2D(2, stride: 1, padding: 1, dilation: 2)
            GlobalAveragePooling2D()
            Linear(6, 3, generator: SeededGenerator(seed: 8))
            Softmax()
        }
        let asImages = { (flat: Tensor) in flat.reshaped([flat.shape[0], 1, 28, 28]) }
        try warmUpRunningStatistics(cnn, batches: (0..<3).map { asImages(try fashionImages(16, offset: 400 + 16 * $0)) })
        setNonTrivialAffine(cnn)
        // The issue-4 network, on 12×12 images to stay small.
        let seedCNN = SeedCNN(imageSize: 12, generator: SeededGenerator(seed: 9))
        try warmUpRunningStatistics(seedCNN, batches: (0..<3).map { randomTensor([8, 1, 12, 12], seed: 50 + UInt64($0)) })
        setNonTrivialAffine(seedCNN)

        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(name: String, model: Module, inputShape: [Int], input: Tensor)] = [
            ("MLP", mlp, [784], images), ("MLP with BN folded", folded, [784], images),
            ("Keras-style", keras, [5, 3], kerasInput), ("SeedMLP", seed, [784], images),
            ("LayerNorm/GroupNorm/InstanceNorm", siblings, [6, 4, 5], siblingsInput),
            ("CNN", cnn, [1, 28, 28], asImages(images)),
            ("SeedCNN", seedCNN, [1, 12, 12], randomTensor([5, 1, 12, 12], seed: 60)),
        ]
        var runCases: [ONNXRuntimeCase] = []
        for (index, exported) in cases.enumerated() {
            let url = directory.appendingPathComponent("model\(index).onnx")
            try exported.model.exportONNX(to: url, inputShape: exported.inputShape)
            runCases.append(ONNXRuntimeCase(model: url, input: exported.input))
        }
        let onnxOutputs = try runONNXRuntime(runCases, in: directory)

        for ((name, model, _, input), onnxOutput) in zip(cases, onnxOutputs) {
            let expected = try model.predict(input)
            #expect(onnxOutput.shape == expected.shape, "\(name)")
            let worst = zip(onnxOutput.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-5, "\(name): largest |ONNX Runtime − NormKit| is \(worst)")
        }
        // The running statistics really are non-trivial, so BN's export is exercised.
        let bn = try #require(mlp.layers[1] as? BatchNorm)
        #expect(bn.runningMean!.scalars.contains { abs($0) > 0.05 })
        #expect(bn.runningVariance!.scalars.contains { abs($0 - 1) > 0.05 })
    }
}
