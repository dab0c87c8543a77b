// Conv2D (initialisation, names, batch-norm folding), the pooling layers, Dropout,
// and SeedCNN (PyTorch's state-dict names, shapes, learning on a toy task).
// The ops' numerics are checked against Double references in NormKitCoreTests.

import NormKitCore
@testable import NormKitNN
import Testing

@Suite("Conv2D layer")
struct Conv2DLayerTests {
    @Test("weight (out, in/groups, kH, kW) and bias are named as in PyTorch and drawn from ±1/√fanIn")
    func initialisation() {
        let layer = Conv2D(4, 6, kernelSize: [3, 2], groups: 2, generator: SeededGenerator(seed: 1))
        #expect(layer.namedParameters().map(\.0) == ["weight", "bias"])
        #expect(layer.weight.shape == [6, 2, 3, 2])
        #expect(layer.bias?.shape == [6])
        let bound = 1 / Float(2 * 3 * 2).squareRoot()
        let values = layer.weight.value.scalars + (layer.bias?.value.scalars ?? [])
        #expect(values.allSatisfy { abs($0) < bound })
        #expect(values.max()! > bound / 2 && values.min()! < -bound / 2, "the draws spread over the interval")
        #expect(Conv2D(1, 2, kernelSize: 3, bias: false, generator: SeededGenerator(seed: 1)).bias == nil)
        let again = Conv2D(4, 6, kernelSize: [3, 2], groups: 2, generator: SeededGenerator(seed: 1))
        #expect(again.weight.value.scalars == layer.weight.value.scalars, "a seed fixes the initial weights")
    }

    @Test("build reports PyTorch's output shape")
    func outputShape() {
        let layer = Conv2D(3, 8, kernelSize: 3, stride: 2, padding: 1, generator: SeededGenerator(seed: 2))
        #expect(layer.build(inputShape: [5, 3, 28, 27]) == [5, 8, 14, 14])
    }

    @Test("a BatchNorm folded into the convolution gives the same inference output within 1e-5",
          arguments: [true, false])
    func foldingBatchNorm(convolutionHasBias: Bool) throws {
        let convolution = Conv2D(3, 4, kernelSize: 3, stride: 2, padding: 1, bias: convolutionHasBias,
                                 generator: SeededGenerator(seed: 3))
        let batchNorm = BatchNorm2d(4)
        batchNorm.runningMean = tensor(randomDoubles(4, in: -1...1, seed: 4))
        batchNorm.runningVariance = tensor(randomDoubles(4, in: 0.05...3, seed: 5))
        try #require(batchNorm.weight).value = tensor(randomDoubles(4, in: -2...2, seed: 6))
        try #require(batchNorm.bias).value = tensor(randomDoubles(4, in: -1...1, seed: 7))
        let model = Sequential { convolution; batchNorm; ReLU() }
        model.eval()
        let x = tensor(randomDoubles(2 * 3 * 9 * 8, seed: 8), shape: [2, 3, 9, 8])

        let expected = try model(x)
        let folded = try model.foldingBatchNorms()
        let actual = try folded(x)

        #expect(folded.layers.count == 2)
        let foldedConvolution = try #require(folded.layers.first as? Conv2D)
        #expect(foldedConvolution.bias != nil)
        #expect(foldedConvolution.padding == 1 && foldedConvolution.stride == 2)
        #expect(actual.shape == expected.shape)
        expectClose(actual.scalars, doubles(expected), relative: 1e-5, absolute: 1e-5, "folded output")
        #expect(convolution.weight.value.scalars != foldedConvolution.weight.value.scalars, "the original is unchanged")
    }

    @Test("folding refuses a batch norm in training mode or over another number of channels")
    func foldingRefusals() {
        let convolution = Conv2D(3, 4, kernelSize: 3, generator: SeededGenerator(seed: 9))
        #expect(throws: BatchNormFoldingError.self) { try convolution.foldingBatchNorm(BatchNorm2d(4)) }
        let other = BatchNorm2d(5)
        other.eval()
        #expect(throws: BatchNormFoldingError.self) { try convolution.foldingBatchNorm(other) }
    }
}

@Suite("Pooling and dropout layers")
struct PoolingAndDropoutLayerTests {
    @Test("pooling layers report their output shapes; the stride defaults to the window")
    func shapes() throws {
        #expect(MaxPool2D(2).build(inputShape: [2, 3, 7, 6]) == [2, 3, 3, 3])
        #expect(AvgPool2D(3, stride: 2, padding: 1).build(inputShape: [2, 3, 7, 6]) == [2, 3, 4, 3])
        #expect(GlobalAveragePooling2D().build(inputShape: [2, 3, 7, 6]) == [2, 3])
        let x = tensor(randomDoubles(2 * 3 * 7 * 6, seed: 9), shape: [2, 3, 7, 6])
        #expect(try MaxPool2D(2)(x).shape == [2, 3, 3, 3])
        #expect(try AvgPool2D(3, stride: 2, padding: 1)(x).shape == [2, 3, 4, 3])
        #expect(try GlobalAveragePooling2D()(x).shape == [2, 3])
    }

    @Test("Dropout is the identity in inference and drops about p of the values in training, reproducibly")
    func dropout() throws {
        let x = tensor(randomDoubles(50 * 40, in: 1...2, seed: 10), shape: [50, 40])
        let layer = Dropout(0.25, generator: SeededGenerator(seed: 11))
        layer.eval()
        #expect(try layer(x).scalars == x.scalars)

        layer.train()
        let first = try layer(x)
        let dropped = first.scalars.filter { $0 == 0 }.count
        #expect(abs(Double(dropped) / 2000 - 0.25) < 0.045)   // > 4 standard deviations
        for (y, value) in zip(first.scalars, x.scalars) where y != 0 {
            #expect(abs(y - value / 0.75) <= 1e-6 * abs(y))
        }
        #expect(try layer(x).scalars != first.scalars, "each training forward draws a new mask")
        let twin = Dropout(0.25, generator: SeededGenerator(seed: 11))
        #expect(try twin(x).scalars == first.scalars, "the same seed draws the same masks")
    }
}

@Suite("SeedCNN")
struct SeedCNNTests {
    @Test("parameters carry the names of PyTorch's nn.Sequential and its parameter count")
    func stateDictNames() {
        let model = SeedCNN(generator: SeededGenerator(seed: 12))
        // From torch_cnn.py: [name for name, _ in model.named_parameters()] and sum of numel().
        #expect(model.namedParameters().map(\.0) == [
            "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
            "9.weight", "9.bias", "10.weight", "10.bias", "12.weight", "12.bias",
        ])
        #expect(model.parameterCount == 422_090)
        // torch_cnn.py's model.state_dict().keys(): parameters plus BN buffers.
        var stateNames: Set<String> = []
        for index in [1, 5, 10] {
            for name in ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"] { stateNames.insert("\(index).\(name)") }
        }
        for index in [0, 4, 9, 12] { stateNames.formUnion(["\(index).weight", "\(index).bias"]) }
        #expect(Set(model.stateDict().keys) == stateNames)
        #expect(model.namedModules().map(\.0).dropFirst().map { $0 } == (0...12).map(String.init))
        #expect(SeedCNN(batchNorm: false, generator: SeededGenerator(seed: 12)).namedParameters().map(\.0).first == "0.weight")
    }

    @Test("SeedCNN(shapedLike:) takes channels, classes, image size and batch norm from a state dict, and names what does not fit")
    func shapedLikeStateDict() throws {
        let source = SeedCNN(imageSize: 12, inChannels: 3, classes: 5, generator: SeededGenerator(seed: 15))
        let copy = try SeedCNN(shapedLike: source.stateDict())
        #expect(copy.conv1.inChannels == 3 && copy.fc2.outFeatures == 5 && copy.fc1.inFeatures == 64 * 3 * 3)
        #expect(copy.bn1 != nil && copy.bn2 != nil && copy.bn3 != nil)
        try copy.loadStateDict(source.stateDict())
        // 12×12 pools to 3×3, as do 13×13 … 15×15; 16×16 pools to 4×4.
        #expect(copy.acceptsImages(rows: 12, columns: 12) && copy.acceptsImages(rows: 15, columns: 13))
        #expect(!copy.acceptsImages(rows: 16, columns: 16) && !copy.acceptsImages(rows: 12, columns: 8))
        let plain = try SeedCNN(shapedLike: SeedCNN(batchNorm: false, generator: SeededGenerator(seed: 16)).stateDict())
        #expect(plain.bn1 == nil && plain.bn3 == nil && plain.fc1.inFeatures == 3136)

        var broken = source.stateDict()
        broken["12.weight"] = nil
        broken["0.weight"] = .float(.zeros([4, 1, 3, 3]))
        broken["9.weight"] = .float(.zeros([128, 64 * 6]))
        let error = try #require(throws: StateDictError.self) { try SeedCNN(shapedLike: broken) }
        #expect(error.missingKeys == ["12.weight"])
        #expect(error.mismatchedKeys.map(\.key) == ["0.weight", "9.weight"])
        #expect(error.mismatchedKeys.map(\.found) == ["float[4, 1, 3, 3]", "float[128, 384]"])
    }

    @Test("pooling before ReLU gives the outputs, gradients and running statistics of PyTorch's layer order, bit for bit")
    func poolingBeforeReLUChangesNothing() throws {
        // Images like Fashion-MNIST's: a background of exact zeros (a tie in every window there,
        // after the convolution and batch norm too) and strokes of whole 1/255 steps.
        let (count, side) = (16, 12)
        var generator = SeededGenerator(seed: 20)
        var pixels = [Float](repeating: 0, count: count * side * side)
        for image in 0..<count {
            let top = Int(generator.next() % 4), left = Int(generator.next() % 4)
            for row in top..<top + 6 {
                for column in left..<left + 5 {
                    pixels[(image * side + row) * side + column] = Float(generator.next() % 8 * 32) / 255
                }
            }
        }
        let x = Tensor(pixels, shape: [count, 1, side, side])
        let labels = (0..<count).map { $0 % 10 }
        func trainingStep(_ forward: (SeedCNN) throws -> Tensor) throws -> (model: SeedCNN, output: Tensor) {
            let model = SeedCNN(imageSize: Size2D(side), generator: SeededGenerator(seed: 21))
            let output = try forward(model)
            CrossEntropyLoss()(output, labels).backward()
            return (model, output)
        }
        let pytorchOrder = try trainingStep { model in try model.namedChildren().reduce(x) { try $1.1($0) } }
        let ours = try trainingStep { model in try model(x) }

        #expect(ours.output.scalars.map(\.bitPattern) == pytorchOrder.output.scalars.map(\.bitPattern))
        let expected = Dictionary(uniqueKeysWithValues: pytorchOrder.model.namedParameters())
        #expect(ours.model.namedParameters().count == 14)
        for (name, parameter) in ours.model.namedParameters() {
            let gradient = try #require(parameter.gradient, "\(name) has no gradient")
            #expect(gradient.scalars.map(\.bitPattern) == expected[name]?.gradient?.scalars.map(\.bitPattern), "\(name)")
        }
        let expectedState = pytorchOrder.model.stateDict()
        for (name, value) in ours.model.stateDict() where name.contains("running") {
            #expect(value.floatTensor.scalars.map(\.bitPattern)
                        == expectedState[name]?.floatTensor.scalars.map(\.bitPattern), "\(name)")
        }

        // The batch-normalized activations that the first pooling sees hold tied windows both
        // below and above 0: the cases where the order could have mattered.
        let probe = SeedCNN(imageSize: Size2D(side), generator: SeededGenerator(seed: 21))
        let normalized = try probe.bn1!(probe.conv1(x)).scalars
        var tiedAtOrBelowZero = 0, tiedAboveZero = 0
        for plane in 0..<count * 32 {
            for i in 0..<side / 2 {
                for j in 0..<side / 2 {
                    let window = [0, 1, side, side + 1].map { normalized[plane * side * side + 2 * i * side + 2 * j + $0] }
                    let maximum = window.max()!
                    guard window.filter({ $0 == maximum }).count > 1 else { continue }
                    if maximum > 0 { tiedAboveZero += 1 } else { tiedAtOrBelowZero += 1 }
                }
            }
        }
        #expect(tiedAtOrBelowZero > 100 && tiedAboveZero > 100, "\(tiedAtOrBelowZero) and \(tiedAboveZero) tied windows")
    }

    @Test("maps (N, 1, 28, 28) images to (N, 10) logits")
    func shapes() throws {
        let model = SeedCNN(generator: SeededGenerator(seed: 13))
        #expect(model.build(inputShape: [4, 1, 28, 28]) == [4, 10])
        let output = try model.predict(tensor(randomDoubles(2 * 784, in: 0...1, seed: 14), shape: [2, 1, 28, 28]))
        #expect(output.shape == [2, 10])
    }

    @Test("a small conv net of the same layers learns to tell images bright on the left from bright on the right")
    func learnsToyTask() throws {
        // The same kinds of layers as SeedCNN, narrower, so that this debug-build test stays fast.
        var generator = SeededGenerator(seed: 15)
        var pixels: [Float] = [], labels: [Int] = []
        for i in 0..<64 {
            let label = i % 2
            for _ in 0..<8 {
                for column in 0..<8 {
                    let bright = (column < 4) == (label == 0)
                    pixels.append((bright ? 0.7 : 0.2) + 0.3 * generator.nextUnitFloat())
                }
            }
            labels.append(label)
        }
        let x = Tensor(pixels, shape: [64, 1, 8, 8])
        let model = Sequential {
            Conv2D(1, 4, kernelSize: 3, padding: 1, generator: SeededGenerator(seed: 16))
            BatchNorm(featureCount: 4)
            ReLU()
            MaxPool2D(2)
            Flatten()
            Linear(64, 2, generator: SeededGenerator(seed: 17))
        }
        model.compile(optimizer: Adam(learningRate: 0.01), loss: .crossEntropy, metrics: [.accuracy])
        let history = try model.fit(x: x, y: labels, epochs: 4, batchSize: 16, generator: SeededGenerator(seed: 18),
                                    progress: .silent)
        #expect(history.loss.last! < history.loss.first!)
        let predictions = try model.predict(x).argmax(axis: -1)
        let correct = zip(predictions, labels).filter { $0 == $1 }.count
        #expect(correct >= 60)
    }
}
