import NormKitCore
import Testing

/// Where a tensor's values live, to tell shared storage from a copy.
private func storageAddress(_ tensor: Tensor) -> UnsafeRawPointer? {
    tensor.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
}

@Suite("Tensor: creation, shape, copy-on-write, indexing")
struct TensorTests {
    // MARK: Creation (exact values: `==` is the point here)

    @Test func zerosAndOnesHaveTheRequestedShapeAndValue() {
        let zeros = Tensor.zeros([2, 3, 4])
        #expect(zeros.shape == [2, 3, 4])
        #expect(zeros.rank == 3)
        #expect(zeros.scalarCount == 24)
        #expect(zeros.scalars.allSatisfy { $0 == 0 })
        let ones = Tensor.ones([5])
        #expect(ones.shape == [5])
        #expect(ones.scalars == [1, 1, 1, 1, 1])
        #expect(Tensor(repeating: -2.5, shape: [2, 2]).scalars == [-2.5, -2.5, -2.5, -2.5])
    }

    @Test func arrayInitializerKeepsRowMajorOrder() {
        let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        #expect(t.shape == [2, 3])
        #expect(t[0, 2] == 3)
        #expect(t[1, 0] == 4)
        #expect(Tensor([7, 8, 9]).shape == [3])
    }

    @Test func scalarTensorHasRankZeroAndOneElement() {
        let s = Tensor(scalar: 4.25)
        #expect(s.shape == [])
        #expect(s.rank == 0)
        #expect(s.scalarCount == 1)
        #expect(s.scalar == 4.25)
        #expect(s[] == 4.25)
    }

    @Test func emptyShapeHoldsNoValues() {
        let t = Tensor.zeros([0, 3])
        #expect(t.scalarCount == 0)
        #expect(t.scalars.isEmpty)
    }

    @Test func newTensorsAreNotPartOfTheGraph() {
        #expect(!Tensor.zeros([2]).requiresGradient)
        #expect(Tensor([1, 2]).gradientNode == nil)
    }

    // MARK: Shape

    @Test(arguments: [
        ([2, 3, 4], [-1], [24]),
        ([2, 3, 4], [6, -1], [6, 4]),
        ([2, 3, 4], [-1, 12], [2, 12]),
        ([2, 3, 4], [2, -1, 2], [2, 6, 2]),
        ([24], [4, 3, 2], [4, 3, 2]),
        ([1], [], []),
    ])
    func reshapeResolvesMinusOneAndKeepsValues(from: [Int], to: [Int], expected: [Int]) {
        let values = (0..<from.reduce(1, *)).map(Float.init)
        let reshaped = Tensor(values, shape: from).reshaped(to)
        #expect(reshaped.shape == expected)
        #expect(reshaped.scalars == values)
    }

    @Test func reshapeSharesStorageWithTheOriginal() {
        let t = Tensor((0..<12).map(Float.init), shape: [3, 4])
        #expect(storageAddress(t.reshaped([4, 3])) == storageAddress(t))
    }

    @Test func reshapeWithWrongElementCountStops() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.zeros([2, 3]).reshaped([4, -1])
        }
    }

    @Test func reshapeGradientHasTheInputShape() {
        let x = randomValues([2, 6], seed: 1)
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].reshaped([3, -1]) } reference: { inputs in
            DoubleTensor(inputs[0].values, shape: [3, 4])
        }
    }

    // MARK: Copy-on-write

    @Test func copiesShareStorageUntilOneIsMutated() {
        let original = Tensor([1, 2, 3, 4], shape: [2, 2])
        var copy = original
        #expect(storageAddress(copy) == storageAddress(original), "a plain copy must not duplicate the values")

        copy[0, 1] = 20
        #expect(storageAddress(copy) != storageAddress(original), "mutation must copy shared storage first")
        #expect(original.scalars == [1, 2, 3, 4])
        #expect(copy.scalars == [1, 20, 3, 4])
    }

    @Test func mutatingThroughTheBufferLeavesOtherCopiesUnchanged() {
        let original = Tensor([1, 2, 3])
        var copy = original
        copy.withUnsafeMutableBufferPointer { buffer in
            for i in buffer.indices { buffer[i] *= 10 }
        }
        #expect(original.scalars == [1, 2, 3])
        #expect(copy.scalars == [10, 20, 30])
    }

    @Test func mutatingAUniqueTensorDoesNotCopy() {
        var t = Tensor([1, 2, 3])
        let before = storageAddress(t)
        t[1] = 7
        #expect(storageAddress(t) == before)
        #expect(t.scalars == [1, 7, 3])
    }

    @Test func mutatingAReshapedViewLeavesTheOriginalUnchanged() {
        let original = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        var view = original.reshaped([3, 2])
        view[2, 1] = 0
        #expect(original.scalars == [1, 2, 3, 4, 5, 6])
        #expect(view.scalars == [1, 2, 3, 4, 5, 0])
    }

    // MARK: Subscript

    @Test func subscriptAddressesRowMajorElements() {
        var t = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        #expect(t[1, 2, 3] == 23)
        #expect(t[1, 0, 2] == 14)
        #expect(t[0, 2, 1] == 9)
        t[0, 1, 1] = -5
        #expect(t.scalars[5] == -5)
    }

    @Test func subscriptOutsideTheShapeStops() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.zeros([2, 3])[2, 0]
        }
    }

    // MARK: Slicing and gathering

    @Test func sliceCopiesTheRequestedRows() {
        let t = Tensor((0..<12).map(Float.init), shape: [4, 3])
        let rows = t.slice(1..<3)
        #expect(rows.shape == [2, 3])
        #expect(rows.scalars == [3, 4, 5, 6, 7, 8])
        #expect(t.slice(2..<2).shape == [0, 3])
        #expect(t.slice(0..<4).scalars == t.scalars)
    }

    @Test func sliceGradientIsZeroOutsideTheRows() {
        let x = randomValues([5, 2, 3], seed: 2)
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].slice(1..<4) } reference: { inputs in
            DoubleTensor(Array(inputs[0].values[6..<24]), shape: [3, 2, 3])
        }
    }

    @Test func gatheringRowsFollowsTheIndexOrderAndAllowsRepeats() {
        let t = Tensor((0..<8).map(Float.init), shape: [4, 2])
        let gathered = t.gatheringRows([3, 0, 3, 1])
        #expect(gathered.shape == [4, 2])
        #expect(gathered.scalars == [6, 7, 0, 1, 6, 7, 2, 3])
        #expect(t.gatheringRows([Int]()).shape == [0, 2])
        #expect(t.gatheringRows(1..<3).scalars == [2, 3, 4, 5])
    }

    @Test func gatheringRowsGradientAccumulatesRepeatedRows() {
        let x = randomValues([4, 3], seed: 3)
        let indices = [2, 0, 2, 3, 2]
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].gatheringRows(indices) } reference: { inputs in
            DoubleTensor(indices.flatMap { inputs[0].values[($0 * 3)..<($0 * 3 + 3)] }, shape: [5, 3])
        }
    }

    @Test func gatheringARowOutsideTheTensorStops() async {
        await #expect(processExitsWith: .failure) {
            _ = Tensor.zeros([3, 2]).gatheringRows([0, 3])
        }
    }

    // MARK: Transpose

    @Test func transposedSwapsRowsAndColumns() {
        let x = randomValues([3, 5], seed: 4)
        let t = x.tensor.transposed()
        #expect(t.shape == [5, 3])
        #expect(t.scalars == Reference.transposed(x).tensor.scalars)
    }

    @Test func transposedGradientIsTheTransposedSeed() {
        let x = randomValues([4, 3], seed: 5)
        expectGradientsMatchFiniteDifferences(at: [x]) { $0[0].transposed() } reference: { Reference.transposed($0[0]) }
    }
}
