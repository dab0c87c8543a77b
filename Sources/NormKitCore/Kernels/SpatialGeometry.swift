/// A height and a width: a 2-d kernel size, stride, padding or dilation.
///
/// Written `3` for (3, 3) or `[3, 5]` for (3, 5), as PyTorch takes `3` or `(3, 5)`.
public struct Size2D: Sendable, Equatable, Hashable, CustomStringConvertible,
    ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral {
    public var height: Int
    public var width: Int

    public init(_ height: Int, _ width: Int) {
        self.height = height
        self.width = width
    }

    /// The same size on both axes.
    public init(_ both: Int) { self.init(both, both) }

    public init(integerLiteral value: Int) { self.init(value) }

    public init(arrayLiteral elements: Int...) {
        precondition(elements.count == 2, "Size2D takes [height, width], got \(elements)")
        self.init(elements[0], elements[1])
    }

    public var description: String { height == width ? "\(height)" : "(\(height), \(width))" }
}

/// Where a sliding window (a convolution kernel or a pooling window) lands on one image plane.
///
/// Output size per axis, as in PyTorch (floor mode):
/// out = ⌊(in + 2·padding − dilation·(window − 1) − 1) / stride⌋ + 1.
/// Output position o reads input positions o·stride − padding + j·dilation for
/// j in 0..<window; positions outside 0..<in are padding.
public struct SlidingWindow: Sendable, Equatable {
    public let inputSize: Size2D
    public let window: Size2D
    public let stride: Size2D
    public let padding: Size2D
    public let dilation: Size2D
    public let outputSize: Size2D

    /// - Precondition: window, stride and dilation ≥ 1, padding ≥ 0, and the dilated window
    ///   fits the padded input (at least one output position); `what` names the caller.
    public init(inputSize: Size2D, window: Size2D, stride: Size2D, padding: Size2D, dilation: Size2D,
                what: @autoclosure () -> String) {
        precondition(window.height >= 1 && window.width >= 1, "\(what()): window \(window) must be ≥ 1")
        precondition(stride.height >= 1 && stride.width >= 1, "\(what()): stride \(stride) must be ≥ 1")
        precondition(dilation.height >= 1 && dilation.width >= 1, "\(what()): dilation \(dilation) must be ≥ 1")
        precondition(padding.height >= 0 && padding.width >= 0, "\(what()): padding \(padding) must be ≥ 0")
        // Checked before dividing: Swift's division truncates toward zero, so a negative
        // span would otherwise give one output position instead of none.
        let spanHeight = inputSize.height + 2 * padding.height - dilation.height * (window.height - 1) - 1
        let spanWidth = inputSize.width + 2 * padding.width - dilation.width * (window.width - 1) - 1
        precondition(spanHeight >= 0 && spanWidth >= 0,
                     "\(what()): the window \(window) (dilation \(dilation)) is larger than the input \(inputSize) "
                        + "with padding \(padding)")
        self.inputSize = inputSize
        self.window = window
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.outputSize = Size2D(spanHeight / stride.height + 1, spanWidth / stride.width + 1)
    }

    /// Output positions `o` whose window tap `tap` lands inside the input along one axis:
    /// 0 ≤ o·stride − padding + tap·dilation < input.
    @inline(__always)
    static func validOutputRange(input: Int, output: Int, stride: Int, padding: Int, dilation: Int, tap: Int) -> Range<Int> {
        let offset = tap * dilation - padding          // input position of output 0
        // first o with o·stride + offset ≥ 0, last o with o·stride + offset ≤ input − 1
        let lower = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let upperInclusive = input - 1 - offset
        let upper = upperInclusive < 0 ? 0 : min(output, upperInclusive / stride + 1)
        return lower < upper ? lower..<upper : 0..<0
    }
}
