@testable import NormKitCore
import Testing

/// im2col as its definition reads: col[(c, i, j), (r, s)] = image[c, r·stride − pad + i·dilation,
/// s·stride − pad + j·dilation], or 0 where that position is padding.
private func referenceUnfold(_ image: [Float], _ g: Conv2DGeometry) -> [Float] {
    let w = g.window
    var col: [Float] = []
    for c in 0..<g.inChannels {
        for i in 0..<w.window.height {
            for j in 0..<w.window.width {
                for r in 0..<w.outputSize.height {
                    for s in 0..<w.outputSize.width {
                        let row = r * w.stride.height - w.padding.height + i * w.dilation.height
                        let column = s * w.stride.width - w.padding.width + j * w.dilation.width
                        let inside = row >= 0 && row < w.inputSize.height && column >= 0 && column < w.inputSize.width
                        col.append(inside ? image[(c * w.inputSize.height + row) * w.inputSize.width + column] : 0)
                    }
                }
            }
        }
    }
    return col
}

@Suite("conv2D unfold and fold kernels")
struct Conv2DKernelTests {
    /// Geometries whose runs of padding per col row and per image row take every length the
    /// zeroing handles differently: 1–3 floats, 4–15, 16 and more (rows of 20 and 40).
    static let geometries: [(name: String, geometry: Conv2DGeometry)] = [
        ("3×3 pad 1 on 5×3", Conv2DGeometry(batch: 1, inChannels: 2, outChannels: 1, inputSize: Size2D(5, 3), kernelSize: 3, padding: 1)),
        ("5×5 pad 2 on 6×7", Conv2DGeometry(batch: 1, inChannels: 2, outChannels: 1, inputSize: Size2D(6, 7), kernelSize: 5, padding: 2)),
        ("7×7 pad 3 on 9×20", Conv2DGeometry(batch: 1, inChannels: 1, outChannels: 1, inputSize: Size2D(9, 20), kernelSize: 7, padding: 3)),
        ("3×3 pad 1 on 14×14 (the CNN's second layer)", Conv2DGeometry(batch: 1, inChannels: 3, outChannels: 1, inputSize: 14, kernelSize: 3, padding: 1)),
        ("3×3 dilation 5 pad 5 on 7×40", Conv2DGeometry(batch: 1, inChannels: 1, outChannels: 1, inputSize: Size2D(7, 40), kernelSize: 3, padding: 5, dilation: 5)),
        ("3×3 dilation 4 pad 4 on 6×3: taps wholly in the padding", Conv2DGeometry(batch: 1, inChannels: 1, outChannels: 1, inputSize: Size2D(6, 3), kernelSize: 3, padding: 4, dilation: 4)),
        ("5×3 stride 2 pad (2, 1) on 9×21 (not the same-width path)", Conv2DGeometry(batch: 1, inChannels: 2, outChannels: 1, inputSize: Size2D(9, 21), kernelSize: [5, 3], stride: 2, padding: [2, 1])),
    ]

    @Test("conv2DUnfold writes every col entry: the image's values, and 0 in the padding",
          arguments: geometries.indices)
    func unfold(_ index: Int) {
        let g = Self.geometries[index].geometry
        var generator = SeededGenerator(seed: 30)
        let image = (0..<g.inChannels * g.inputSize.height * g.inputSize.width).map { _ in 1 + generator.nextUnitFloat() }
        // NaN everywhere first: an entry the kernel forgets to write shows up.
        var col = [Float](repeating: .nan, count: g.columnCount)
        image.withUnsafeBufferPointer { x in
            col.withUnsafeMutableBufferPointer { conv2DUnfold(image: x.baseAddress!, geometry: g, col: $0.baseAddress!) }
        }
        #expect(col == referenceUnfold(image, g), "\(Self.geometries[index].name)")
    }

    @Test("conv2DFold adds every col entry back onto the input position it came from (the adjoint of unfold)",
          arguments: geometries.indices)
    func fold(_ index: Int) {
        let g = Self.geometries[index].geometry
        var generator = SeededGenerator(seed: 31)
        let planeSize = g.inputSize.height * g.inputSize.width
        // Whole numbers: every sum is exact in Float, so the comparison can be exact too.
        var col = (0..<g.columnCount).map { _ in Float(generator.next() % 7) }
        // ⟨unfold(e_p), col⟩ for each input position p is what the fold must put at p.
        var expected = [Float](repeating: 0, count: g.inChannels * planeSize)
        for p in expected.indices {
            var unit = [Float](repeating: 0, count: expected.count)
            unit[p] = 1
            expected[p] = zip(referenceUnfold(unit, g), col).reduce(0) { $0 + $1.0 * $1.1 }
        }
        var image = [Float](repeating: 0, count: expected.count)
        col.withUnsafeMutableBufferPointer { c in
            image.withUnsafeMutableBufferPointer { conv2DFold(col: c.baseAddress!, geometry: g, image: $0.baseAddress!) }
        }
        #expect(image == expected, "\(Self.geometries[index].name)")
    }
}
