import NormKitCore

/// The small convolutional network of issue 4, the same as the PyTorch peer
/// (`peers/torch_cnn.py`):
///
///     Conv 1→32 3×3 pad 1, BatchNorm, ReLU, MaxPool 2
///     Conv 32→64 3×3 pad 1, BatchNorm, ReLU, MaxPool 2
///     Flatten, Linear 3136→128, BatchNorm, ReLU, Linear 128→10
///
/// Input (N, 1, 28, 28) (see `LabeledImages.channelsFirst`); output logits (N, classes), for
/// `CrossEntropyLoss`. Sub-modules are named by their index in the PyTorch `nn.Sequential`
/// ("0" … "12"), so the state dict reads `0.weight`, `1.running_mean`, `9.weight`, … exactly as
/// PyTorch's does. With `batchNorm: false` the three normalization layers are absent (their
/// indices are skipped) and the convolutions and the hidden linear layer keep their biases.
public final class SeedCNN: Module {
    public let conv1: Conv2D
    public let bn1: BatchNorm2d?
    public let relu1 = ReLU()
    public let pool1 = MaxPool2D(2)
    public let conv2: Conv2D
    public let bn2: BatchNorm2d?
    public let relu2 = ReLU()
    public let pool2 = MaxPool2D(2)
    public let flatten = Flatten()
    public let fc1: Linear
    public let bn3: BatchNorm1d?
    public let relu3 = ReLU()
    public let fc2: Linear

    /// - Parameters:
    ///   - imageSize: input height and width (28 for Fashion-MNIST); the hidden linear layer
    ///     takes 64·⌊⌊H/2⌋/2⌋·⌊⌊W/2⌋/2⌋ features.
    ///   - inChannels: image channels (1 for grayscale).
    ///   - classes: output logits.
    ///   - batchNorm: whether the three batch-normalization layers are present.
    ///   - generator: where the layers' initial weights come from; by default each layer seeds its
    ///     own from `GlobalRandom`, as `torch.manual_seed` would.
    public init(imageSize: Size2D = 28, inChannels: Int = 1, classes: Int = 10, batchNorm: Bool = true,
                generator: SeededGenerator? = nil) {
        var source = generator
        func layerGenerator() -> SeededGenerator? { source.map { _ in SeededGenerator(seed: source!.next()) } }
        let pooled = Size2D(imageSize.height / 2 / 2, imageSize.width / 2 / 2)
        precondition(pooled.height >= 1 && pooled.width >= 1, "SeedCNN: images of \(imageSize) are too small for two 2×2 poolings")
        // Created in PyTorch's order, so GlobalRandom hands out seeds in the same sequence.
        conv1 = Conv2D(inChannels, 32, kernelSize: 3, padding: 1, generator: layerGenerator())
        bn1 = batchNorm ? BatchNorm2d(32) : nil
        conv2 = Conv2D(32, 64, kernelSize: 3, padding: 1, generator: layerGenerator())
        bn2 = batchNorm ? BatchNorm2d(64) : nil
        fc1 = Linear(64 * pooled.height * pooled.width, 128, generator: layerGenerator())
        bn3 = batchNorm ? BatchNorm1d(128) : nil
        fc2 = Linear(128, classes, generator: layerGenerator())
        super.init()
    }

    /// A SeedCNN shaped like `state` (a `stateDict()` of one, or peers/torch_cnn.py's
    /// `model.state_dict()`), ready for `loadStateDict(state)`.
    ///
    /// Image channels come from `0.weight` (32, C, 3, 3), classes from `12.weight` (classes, 128),
    /// and batch norm is present when `1.weight` or `1.running_mean` is. The image size is not
    /// stored: `9.weight` (128, 64·h·w) gives only the pooled h·w, which is taken to be square,
    /// and the images to be the smallest that pool to it (28×28 for 7×7). Any image that pools to
    /// the same h×w works as well (see `acceptsImages(rows:columns:)`).
    /// - Throws: `StateDictError` naming the missing keys or the weights of unexpected shape.
    public convenience init(shapedLike state: StateDict) throws(StateDictError) {
        let convolution = state["0.weight"]?.shape, hidden = state["9.weight"]?.shape
        let output = state["12.weight"]?.shape
        let missing = ["0.weight", "9.weight", "12.weight"].filter { state[$0] == nil }
        var mismatched: [StateDictError.Mismatch] = []
        if let convolution, convolution.count != 4 || convolution[0] != 32 || convolution[2...] != [3, 3] {
            mismatched.append(.init(key: "0.weight", expected: "float[32, channels, 3, 3]", found: "float\(convolution)"))
        }
        let pooledPlane = hidden.map { $0.count == 2 && $0[0] == 128 && $0[1] % 64 == 0 ? $0[1] / 64 : 0 } ?? 0
        let pooledSide = Int(Double(pooledPlane).squareRoot().rounded())
        if let hidden, pooledPlane == 0 || pooledSide * pooledSide != pooledPlane {
            mismatched.append(.init(key: "9.weight", expected: "float[128, 64·s·s] (s×s after pooling)", found: "float\(hidden)"))
        }
        if let output, output.count != 2 || output[1] != 128 {
            mismatched.append(.init(key: "12.weight", expected: "float[classes, 128]", found: "float\(output)"))
        }
        guard missing.isEmpty && mismatched.isEmpty, let convolution, let output else {
            throw StateDictError(missingKeys: missing, unexpectedKeys: [], mismatchedKeys: mismatched, model: "SeedCNN")
        }
        self.init(imageSize: Size2D(4 * pooledSide), inChannels: convolution[1], classes: output[0],
                  batchNorm: state["1.weight"] != nil || state["1.running_mean"] != nil,
                  generator: SeededGenerator(seed: 0))  // placeholders for `state`: GlobalRandom stays untouched
    }

    /// Whether images of `rows`×`columns` fit the hidden linear layer, which takes
    /// 64·⌊rows/4⌋·⌊columns/4⌋ features (after two 2×2 poolings).
    public func acceptsImages(rows: Int, columns: Int) -> Bool {
        rows >= 4 && columns >= 4 && 64 * (rows / 4) * (columns / 4) == fc1.inFeatures
    }

    /// The layers in order with their index in the PyTorch `nn.Sequential`.
    public override func namedChildren() -> [(String, Module)] {
        let layers: [Module?] = [conv1, bn1, relu1, pool1, conv2, bn2, relu2, pool2, flatten, fc1, bn3, relu3, fc2]
        return layers.enumerated().compactMap { index, layer in layer.map { ("\(index)", $0) } }
    }

    public override func build(inputShape: [Int]) -> [Int] {
        namedChildren().reduce(inputShape) { shape, child in child.1.build(inputShape: shape) }
    }

    /// The layers of `namedChildren()` in order, except that each max pooling runs before the
    /// ReLU listed ahead of it: the ReLU then sees a quarter of the values (about 5 % less CPU
    /// time per training epoch), and the outputs and every gradient are bit for bit those of
    /// PyTorch's order, for any input:
    ///
    /// - Forward. A window whose maximum m is positive gives m either way (ReLU returns a positive
    ///   value unchanged, and turning the non-positive values into +0 does not change which
    ///   element is largest). A window whose values are all ≤ 0 gives +0 either way. A window
    ///   with a NaN gives that NaN either way: ReLU keeps a NaN (Swift's `max(NaN, 0)` is the
    ///   NaN), and pooling picks the last NaN, at the same position in x as in relu(x).
    /// - Backward. ReLU passes its gradient where its input is > 0 and sends +0 elsewhere; max
    ///   pooling adds each output's gradient onto +0 at the winner and sends +0 elsewhere. With
    ///   m > 0 the winner is the same element in both orders (the first equal to m), and it
    ///   receives +0 + g either way. With all values ≤ 0, or a NaN, ReLU blocks: every element
    ///   receives +0. Only there can the two orders' winners differ — pooling relu(x) sees a tie
    ///   of zeros and takes the first, pooling x takes the largest — but what the winner receives
    ///   is +0 in both.
    ///
    /// `SeedCNNTests` and `ConvolutionOpTests` check both claims, bit for bit.
    public override func forward(_ x: Tensor) throws -> Tensor {
        precondition(x.rank == 4 && x.shape[1] == conv1.inChannels,
                     "SeedCNN expects images (N, \(conv1.inChannels), H, W), got shape \(x.shape); "
                        + "for IDX data pass `images.channelsFirst`")
        var value = try conv1(x)
        if let bn1 { value = try bn1(value) }
        value = try relu1(pool1(value))
        value = try conv2(value)
        if let bn2 { value = try bn2(value) }
        value = try relu2(pool2(value))
        value = try fc1(flatten(value))
        if let bn3 { value = try bn3(value) }
        return try fc2(relu3(value))
    }
}
