import NormKitCore
import Testing

// Double references written from the definitions, index by index.

/// Cross-correlation as PyTorch defines it, seven nested loops:
/// y[n, o, i, j] = b[o] + Σ_{c in o's group, p, q} w[o, c, p, q]·x[n, g·Cin/g + c, i·s − pad + p·d, j·s − pad + q·d].
func referenceConv2D(_ x: DoubleTensor, _ w: DoubleTensor, _ b: DoubleTensor?, stride: Size2D, padding: Size2D,
                     dilation: Size2D, groups: Int) -> DoubleTensor {
    let (batch, inChannels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (outChannels, groupChannels, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
    let outHeight = (height + 2 * padding.height - dilation.height * (kh - 1) - 1) / stride.height + 1
    let outWidth = (width + 2 * padding.width - dilation.width * (kw - 1) - 1) / stride.width + 1
    precondition(inChannels == groupChannels * groups)
    let outPerGroup = outChannels / groups
    var y = [Double](repeating: 0, count: batch * outChannels * outHeight * outWidth)
    for n in 0..<batch {
        for o in 0..<outChannels {
            let group = o / outPerGroup
            for i in 0..<outHeight {
                for j in 0..<outWidth {
                    var total = b?.values[o] ?? 0
                    for c in 0..<groupChannels {
                        for p in 0..<kh {
                            for q in 0..<kw {
                                let row = i * stride.height - padding.height + p * dilation.height
                                let column = j * stride.width - padding.width + q * dilation.width
                                guard row >= 0, row < height, column >= 0, column < width else { continue }
                                let channel = group * groupChannels + c
                                total += w.values[((o * groupChannels + c) * kh + p) * kw + q]
                                    * x.values[((n * inChannels + channel) * height + row) * width + column]
                            }
                        }
                    }
                    y[((n * outChannels + o) * outHeight + i) * outWidth + j] = total
                }
            }
        }
    }
    return DoubleTensor(y, shape: [batch, outChannels, outHeight, outWidth])
}

/// Pooling in Double: for each output, the window's input positions (padding excluded), combined.
func referencePool2D(_ x: DoubleTensor, kernel: Size2D, stride: Size2D, padding: Size2D, dilation: Size2D,
                     combine: ([Double]) -> Double) -> DoubleTensor {
    let (batch, channels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let outHeight = (height + 2 * padding.height - dilation.height * (kernel.height - 1) - 1) / stride.height + 1
    let outWidth = (width + 2 * padding.width - dilation.width * (kernel.width - 1) - 1) / stride.width + 1
    var y: [Double] = []
    for plane in 0..<batch * channels {
        for i in 0..<outHeight {
            for j in 0..<outWidth {
                var window: [Double] = []
                for p in 0..<kernel.height {
                    for q in 0..<kernel.width {
                        let row = i * stride.height - padding.height + p * dilation.height
                        let column = j * stride.width - padding.width + q * dilation.width
                        if row >= 0, row < height, column >= 0, column < width {
                            window.append(x.values[(plane * height + row) * width + column])
                        }
                    }
                }
                y.append(combine(window))
            }
        }
    }
    return DoubleTensor(y, shape: [batch, channels, outHeight, outWidth])
}

/// One convolution configuration under test.
struct ConvCase: Sendable, CustomTestStringConvertible {
    let name: String
    let input: [Int]              // (N, Cin, H, W)
    let outChannels: Int
    let kernel: Size2D
    var stride: Size2D = 1
    var padding: Size2D = 0
    var dilation: Size2D = 1
    var groups = 1
    var bias = true

    var weightShape: [Int] { [outChannels, input[1] / groups, kernel.height, kernel.width] }
    var testDescription: String { name }

    static let all: [ConvCase] = [
        ConvCase(name: "3×3 pad 1 (the CNN's layer)", input: [2, 3, 5, 6], outChannels: 4, kernel: 3, padding: 1),
        ConvCase(name: "stride 2 that does not divide the size", input: [2, 2, 7, 6], outChannels: 3, kernel: 3, stride: 2),
        ConvCase(name: "dilation 2, rectangular kernel and padding", input: [1, 2, 6, 7], outChannels: 3,
                 kernel: [2, 3], padding: [2, 1], dilation: 2),
        ConvCase(name: "groups 2 without bias", input: [2, 4, 5, 5], outChannels: 6, kernel: 3, padding: 1, groups: 2,
                 bias: false),
        ConvCase(name: "kernel larger than the input, with padding", input: [2, 2, 2, 3], outChannels: 2, kernel: 5,
                 padding: 2),
        ConvCase(name: "same width, taller output: padding (2, 1)", input: [2, 2, 4, 5], outChannels: 3, kernel: 3,
                 padding: [2, 1]),
        ConvCase(name: "same size with dilation 2, padding 2", input: [1, 3, 6, 5], outChannels: 2, kernel: 3,
                 padding: 2, dilation: 2),
        ConvCase(name: "1×1 pointwise", input: [3, 4, 3, 3], outChannels: 5, kernel: 1),
        ConvCase(name: "stride (2, 1), padding (1, 0)", input: [2, 2, 5, 4], outChannels: 2, kernel: [3, 2],
                 stride: [2, 1], padding: [1, 0]),
    ]
}

@Suite("conv2D and pooling ops")
struct ConvolutionOpTests {
    @Test("conv2D forward matches the 7-loop Double reference and its gradients match finite differences",
          arguments: ConvCase.all)
    func convolution(_ c: ConvCase) {
        var inputs = [randomValues(c.input, seed: 1), randomValues(c.weightShape, in: -0.5...0.5, seed: 2)]
        if c.bias { inputs.append(randomValues([c.outChannels], seed: 3)) }
        expectGradientsMatchFiniteDifferences(at: inputs) { t in
            conv2D(t[0], weight: t[1], bias: c.bias ? t[2] : nil, stride: c.stride, padding: c.padding,
                   dilation: c.dilation, groups: c.groups)
        } reference: { d in
            referenceConv2D(d[0], d[1], c.bias ? d[2] : nil, stride: c.stride, padding: c.padding,
                            dilation: c.dilation, groups: c.groups)
        }
    }

    @Test("conv2D gives the same result on one thread and on several")
    func convolutionThreadCountInvariant() {
        let x = randomValues([5, 3, 9, 8], seed: 4).tensor
        let w = randomValues([4, 3, 3, 3], seed: 5).tensor
        var serial = x, parallel = x
        withExclusiveThreadCount {
            Threading.count = 1
            serial = conv2D(x, weight: w, bias: nil, padding: 1)
            Threading.count = 3
            parallel = conv2D(x, weight: w, bias: nil, padding: 1)
        }
        #expect(serial.scalars == parallel.scalars)
    }

    @Test("conv2D's output size follows PyTorch's floor formula")
    func convolutionOutputShape() {
        let y = conv2D(Tensor.zeros([1, 1, 7, 6]), weight: Tensor.zeros([2, 1, 3, 3]), bias: nil, stride: 2)
        #expect(y.shape == [1, 2, 3, 2])   // ⌊(7 − 3)/2⌋ + 1, ⌊(6 − 3)/2⌋ + 1
        let padded = conv2D(Tensor.zeros([1, 1, 2, 3]), weight: Tensor.zeros([1, 1, 5, 5]), bias: nil, padding: 2)
        #expect(padded.shape == [1, 1, 2, 3])
    }

    struct PoolCase: Sendable, CustomTestStringConvertible {
        let name: String
        let input: [Int]
        let kernel: Size2D
        var stride: Size2D? = nil
        var padding: Size2D = 0
        var dilation: Size2D = 1
        var testDescription: String { name }

        static let all: [PoolCase] = [
            PoolCase(name: "2×2 (the CNN's pool) on 7×6: the last row is left out", input: [2, 3, 7, 6], kernel: 2),
            PoolCase(name: "2×2 on 4×28 (rows of 14 outputs, as in the CNN's first pool: blocks of 8)", input: [1, 2, 4, 28], kernel: 2),
            PoolCase(name: "2×2 on 5×15 (rows of 7, as in the second pool: blocks of 4; odd sizes)", input: [1, 2, 5, 15], kernel: 2),
            PoolCase(name: "3×3 stride 2 pad 1", input: [2, 2, 5, 6], kernel: 3, stride: 2, padding: 1),
            PoolCase(name: "overlapping 2×3 stride 1", input: [1, 2, 4, 5], kernel: [2, 3], stride: 1),
        ]
    }

    @Test("maxPool2D matches the reference and sends each gradient to the arg-max", arguments: PoolCase.all)
    func maxPooling(_ c: PoolCase) {
        expectGradientsMatchFiniteDifferences(at: [randomValues(c.input, seed: 6)]) { t in
            maxPool2D(t[0], kernelSize: c.kernel, stride: c.stride, padding: c.padding, dilation: c.dilation)
        } reference: { d in
            referencePool2D(d[0], kernel: c.kernel, stride: c.stride ?? c.kernel, padding: c.padding,
                            dilation: c.dilation) { $0.max()! }
        }
    }

    @Test("maxPool2D of an empty batch is an empty batch, and its gradient too")
    func maxPoolingEmptyBatch() {
        let leaf = makeLeaf(DoubleTensor([], shape: [0, 2, 4, 5]))
        let y = maxPool2D(Tensor.zeros([0, 2, 4, 5]).attached(to: leaf.node), kernelSize: 2)
        #expect(y.shape == [0, 2, 2, 2])
        y.backward(gradient: Tensor.zeros([0, 2, 2, 2]))
        #expect(leaf.node.gradient?.shape == [0, 2, 4, 5])
    }

    @Test("maxPool2D with dilation 2 matches the reference")
    func dilatedMaxPooling() {
        expectGradientsMatchFiniteDifferences(at: [randomValues([1, 2, 6, 6], seed: 7)]) { t in
            maxPool2D(t[0], kernelSize: 2, stride: 1, dilation: 2)
        } reference: { d in
            referencePool2D(d[0], kernel: 2, stride: 1, padding: 0, dilation: 2) { $0.max()! }
        }
    }

    /// One 2×2 window (row-major a, b, c, d) and what PyTorch 2.x's `F.max_pool2d` gives for it
    /// (`return_indices=True` and the input's gradient after `y.sum().backward()`), recorded
    /// from peers' venv: its scan keeps the first of equal values (`val > maxval`) and takes
    /// every NaN it meets (`|| isnan(val)`), so the last NaN wins.
    struct PoolTieCase: Sendable, CustomTestStringConvertible {
        let window: [Float]
        let winner: Int
        var testDescription: String { "\(window) → [\(winner)]" }

        static let all: [PoolTieCase] = [
            PoolTieCase(window: [1, 3, 3, 2], winner: 1),
            PoolTieCase(window: [3, 3, 3, 3], winner: 0),
            PoolTieCase(window: [-1, -1, -2, -1], winner: 0),
            PoolTieCase(window: [-.infinity, -.infinity, -.infinity, -.infinity], winner: 0),
            PoolTieCase(window: [-0.0, 0.0, 0.0, -0.0], winner: 0),   // −0 == +0: a tie, the first stays
            PoolTieCase(window: [1, .nan, 3, 2], winner: 1),
            PoolTieCase(window: [1, .nan, 3, .nan], winner: 3),
            PoolTieCase(window: [.nan, .nan, 1, 1], winner: 1),
            PoolTieCase(window: [2, .nan, .nan, 5], winner: 2),
            PoolTieCase(window: [.nan, 4, 5, 6], winner: 0),
        ]
    }

    @Test("maxPool2D 2×2 picks PyTorch's element on ties and NaNs, and its gradient goes there only",
          arguments: PoolTieCase.all)
    func maxPoolingTiesAndNaN(_ c: PoolTieCase) {
        // The window tiled over planes of several widths, so that the 2×2 kernel meets it in its
        // scalar, 4-lane and 8-lane paths and at every lane position (an odd width leaves its
        // last column out); then once through the general kernel (stride 1 on a 2×2 plane).
        for (rows, columns, stride) in [(2, 2, 2), (4, 6, 2), (2, 14, 2), (4, 15, 2), (2, 34, 2), (2, 2, 1)] {
            let windows = rows / 2 * (columns / 2)
            func tiled(_ window: [Float]) -> [Float] {
                var values = [Float](repeating: 0, count: rows * columns)
                for index in 0..<windows {
                    let (top, left) = (index / (columns / 2) * 2, index % (columns / 2) * 2)
                    for k in 0..<4 { values[(top + k / 2) * columns + left + k % 2] = window[k] }
                }
                return values
            }
            let leaf = makeLeaf(DoubleTensor([Double](repeating: 0, count: rows * columns), shape: [1, 1, rows, columns]))
            let x = Tensor(tiled(c.window), shape: [1, 1, rows, columns]).attached(to: leaf.node)
            let y = maxPool2D(x, kernelSize: 2, stride: Size2D(stride))
            let expected = c.window[c.winner]
            #expect(y.scalars.count == windows
                        && y.scalars.allSatisfy { expected.isNaN ? $0.isNaN : $0.bitPattern == expected.bitPattern },
                    "\(rows)×\(columns) stride \(stride): \(y.scalars)")
            y.backward(gradient: Tensor(repeating: 1, shape: y.shape))
            let onlyWinner = (0..<4).map { Float($0 == c.winner ? 1 : 0) }
            #expect(leaf.node.gradient?.scalars.map(\.bitPattern) == tiled(onlyWinner).map(\.bitPattern),
                    "\(rows)×\(columns) stride \(stride)")
        }
    }

    @Test("maxPool2D 2×2 on planes full of ties, NaNs and signed zeros picks PyTorch's element in every window",
          arguments: [[2, 3, 28, 28], [3, 2, 14, 14], [1, 2, 5, 17], [1, 1, 9, 6], [1, 1, 2, 34]])
    func maxPoolingManyTies(_ shape: [Int]) {
        let (rows, columns) = (shape[2], shape[3])
        let planeSize = rows * columns
        var generator = SeededGenerator(seed: 12)
        let palette: [Float] = [-1, -0.0, 0, 1, 1, .nan, -.infinity]
        let values = (0..<shape.reduce(1, *)).map { _ in palette[Int(generator.next() % UInt64(palette.count))] }
        // PyTorch's scan, written out: the first of the largest values, or the last NaN.
        var expectedValues: [Float] = [], expectedGradient = [Float](repeating: 0, count: values.count)
        for plane in 0..<shape[0] * shape[1] {
            for i in 0..<rows / 2 {
                for j in 0..<columns / 2 {
                    let window = [(0, 0), (0, 1), (1, 0), (1, 1)].map { plane * planeSize + (2 * i + $0.0) * columns + 2 * j + $0.1 }
                    let winner = window.last { values[$0].isNaN }
                        ?? window.first { values[$0] == window.map { values[$0] }.max()! }!
                    expectedValues.append(values[winner])
                    expectedGradient[winner] = Float(expectedValues.count)   // a distinct gradient per window
                }
            }
        }
        let leaf = makeLeaf(DoubleTensor([Double](repeating: 0, count: values.count), shape: shape))
        let y = maxPool2D(Tensor(values, shape: shape).attached(to: leaf.node), kernelSize: 2)
        #expect(y.scalars.map(\.bitPattern) == expectedValues.map(\.bitPattern))
        y.backward(gradient: Tensor((1...expectedValues.count).map(Float.init), shape: y.shape))
        #expect(leaf.node.gradient?.scalars == expectedGradient)
    }

    @Test("maxPool2DBackward 2×2 writes every input gradient: the arg-max's gradient (a −0 as +0) and 0 elsewhere",
          arguments: [Size2D(4, 6), Size2D(5, 7), Size2D(3, 2)])
    func maxPoolingBackwardWritesEverything(_ size: Size2D) {
        // SeedCNN.forward's argument for pooling before ReLU rests on this: the arg-max receives
        // +0 + g, so the same bits whether g is ReLU's gradient or passed through it.
        // Called directly, onto NaN: the row and column an odd size leaves out must be written too.
        let window = SlidingWindow(inputSize: size, window: 2, stride: 2, padding: 0, dilation: 1, what: "test")
        let planes = 2, inputPlane = size.height * size.width
        let outputPlane = window.outputSize.height * window.outputSize.width
        var generator = SeededGenerator(seed: 14)
        let input = (0..<planes * inputPlane).map { _ in generator.nextUnitFloat() }
        var output = [Float](repeating: 0, count: planes * outputPlane)
        var argmax = [Int32](repeating: 0, count: planes * outputPlane)
        maxPool2DForward(input: input, planes: planes, window: window, output: &output, argmax: &argmax)
        let palette: [Float] = [1.5, -0.0, -2, 0]
        let gradient = (0..<output.count).map { palette[$0 % palette.count] }
        var inputGradient = [Float](repeating: .nan, count: input.count)
        maxPool2DBackward(outputGradient: gradient, argmax: argmax, planes: planes, window: window,
                          inputGradient: &inputGradient)
        var expected = [Float](repeating: 0, count: input.count)
        for (position, index) in argmax.enumerated() {
            expected[position / outputPlane * inputPlane + Int(index)] = 0 + gradient[position]
        }
        #expect(inputGradient.map(\.bitPattern) == expected.map(\.bitPattern))
        #expect(expected.contains { $0 == 0 && $0.sign == .plus } && !expected.contains { $0.sign == .minus && $0 == 0 })
    }

    @Test("ReLU after 2×2 max pooling gives the outputs and input gradients of ReLU before it, bit for bit")
    func reluCommutesWithMaxPooling() {
        // SeedCNN pools before its ReLUs (see SeedCNN.forward for why that changes nothing); this
        // is the claim on the two ops alone, for values and upstream gradients chosen to break it:
        // ties, signed zeros, NaNs, infinities.
        let shape = [3, 4, 6, 10]
        var generator = SeededGenerator(seed: 13)
        func draw(_ palette: [Float], _ count: Int) -> [Float] {
            (0..<count).map { _ in palette[Int(generator.next() % UInt64(palette.count))] }
        }
        let values = draw([-2, -1, -1, -0.0, 0, 0.5, 1, 1, .nan, -.infinity, .infinity], shape.reduce(1, *))
        let upstream = draw([1, -1, 0.25, -0.0, 0, .nan, .infinity], 3 * 4 * 3 * 5)
        func run(_ body: (Tensor) -> Tensor) -> (output: [UInt32], gradient: [UInt32]) {
            let leaf = makeLeaf(DoubleTensor([Double](repeating: 0, count: values.count), shape: shape))
            let y = body(Tensor(values, shape: shape).attached(to: leaf.node))
            y.backward(gradient: Tensor(upstream, shape: y.shape))
            return (y.scalars.map(\.bitPattern), leaf.node.gradient?.scalars.map(\.bitPattern) ?? [])
        }
        let reluFirst = run { maxPool2D(relu($0), kernelSize: 2) }
        let poolFirst = run { relu(maxPool2D($0, kernelSize: 2)) }
        #expect(poolFirst.output == reluFirst.output)
        #expect(poolFirst.gradient == reluFirst.gradient)
        // The data has windows where the two orders pool to different winners (all values ≤ 0,
        // the largest not first), which is where the gradients could have differed.
        var differentWinners = 0
        for plane in 0..<12 {
            for i in 0..<3 {
                for j in 0..<5 {
                    let window = [0, 1, 10, 11].map { values[plane * 60 + 2 * i * 10 + 2 * j + $0] }
                    if window.allSatisfy({ $0 <= 0 }) && window[0] != window.max()! { differentWinners += 1 }
                }
            }
        }
        #expect(differentWinners >= 5)
    }

    @Test("averagePool2D matches the reference, padding counted or not", arguments: PoolCase.all, [true, false])
    func averagePooling(_ c: PoolCase, countsPadding: Bool) {
        let kernelArea = Double(c.kernel.height * c.kernel.width)
        expectGradientsMatchFiniteDifferences(at: [randomValues(c.input, seed: 8)]) { t in
            averagePool2D(t[0], kernelSize: c.kernel, stride: c.stride, padding: c.padding, countsPadding: countsPadding)
        } reference: { d in
            referencePool2D(d[0], kernel: c.kernel, stride: c.stride ?? c.kernel, padding: c.padding, dilation: 1) {
                $0.reduce(0, +) / (countsPadding ? kernelArea : Double($0.count))
            }
        }
    }

    @Test("globalAveragePool2D is the mean of each plane")
    func globalAveragePooling() {
        expectGradientsMatchFiniteDifferences(at: [randomValues([3, 4, 3, 5], seed: 9)]) { t in
            globalAveragePool2D(t[0])
        } reference: { d in
            let planeSize = 15
            let means = (0..<12).map { plane in d[0].values[plane * planeSize..<(plane + 1) * planeSize].reduce(0, +) / 15 }
            return DoubleTensor(means, shape: [3, 4])
        }
    }
}
