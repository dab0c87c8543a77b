import Foundation
import NormKitData
import Testing

@Suite("LabeledImages")
struct LabeledImagesTests {
    /// Three 2×2 images whose pixels cover the scaling edge cases, labelled 4, 0, 9.
    private let threeImages = LabeledImages(
        pixels: [
            0, 255, 51, 102,  // image 0
            1, 2, 3, 4,  // image 1
            200, 100, 50, 25,  // image 2
        ],
        labels: [4, 0, 9],
        count: 3, rows: 2, columns: 2
    )

    @Test("reads an images file and a labels file into count, rows, columns, pixels and labels")
    func readsImagesAndLabelsFiles() throws {
        let scratch = try ScratchDirectory()
        let pixels = patternedBytes(count: 4 * 3 * 2)
        let imagesFile = gzipCompressed(idxFile(dimensions: [4, 3, 2], elements: pixels))
        let imagesPath = try scratch.write(imagesFile, to: "images.gz")
        let labelsPath = try scratch.write(idxFile(dimensions: [4], elements: [3, 1, 0, 1]), to: "labels")

        let images = try LabeledImages(imagesFile: imagesPath, labelsFile: labelsPath)

        #expect(images.count == 4)
        #expect(images.rows == 3)
        #expect(images.columns == 2)
        #expect(images.featureCount == 6)
        #expect(images.pixels == pixels)
        #expect(images.labels == [3, 1, 0, 1])
        #expect(images.classCount == 4)
    }

    @Test("images and labels files with different counts are countMismatch naming both files")
    func countMismatch() throws {
        let scratch = try ScratchDirectory()
        let imagesFile = idxFile(dimensions: [3, 2, 2], elements: patternedBytes(count: 12))
        let imagesPath = try scratch.write(imagesFile, to: "few-images")
        let labelsPath = try scratch.write(idxFile(dimensions: [4], elements: [0, 1, 2, 3]), to: "more-labels")

        let error = #expect(throws: IDXError.self) {
            try LabeledImages(imagesFile: imagesPath, labelsFile: labelsPath)
        }

        #expect(error == .countMismatch(imagesPath: imagesPath, imageCount: 3, labelsPath: labelsPath, labelCount: 4))
        #expect(error?.description.contains("few-images") == true)
        #expect(error?.description.contains("more-labels") == true)
    }

    @Test("swapped images and labels files are rejected by rank, naming the file")
    func swappedFiles() throws {
        let scratch = try ScratchDirectory()
        let imagesFile = idxFile(dimensions: [2, 2, 2], elements: patternedBytes(count: 8))
        let imagesPath = try scratch.write(imagesFile, to: "images")
        let labelsPath = try scratch.write(idxFile(dimensions: [2], elements: [0, 1]), to: "labels")

        let error = #expect(throws: IDXError.self) {
            try LabeledImages(imagesFile: labelsPath, labelsFile: imagesPath)
        }

        #expect(error == .wrongMagic(path: labelsPath, found: 0x0000_0801, expectedRank: 3))
    }

    @Test("fillBatch scales 0 to 0, 255 to 1 and 51 to 0.2, and copies labels as Int32")
    func fillBatchScales() {
        var pixels = [Float](repeating: -1, count: 4)
        var labels = [Int32](repeating: -1, count: 1)
        pixels.withUnsafeMutableBufferPointer { pixelBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                threeImages.fillBatch(indices: [0], pixels: pixelBuffer, labels: labelBuffer)
            }
        }
        #expect(pixels[0] == 0)
        #expect(pixels[1] == 1)
        #expect(abs(pixels[2] - 0.2) <= 1e-7)
        #expect(abs(pixels[3] - 0.4) <= 1e-7)
        #expect(labels == [4])
    }

    @Test("fillBatch maps every byte value within 1e-7 of value / 255 and keeps [0, 1]")
    func fillBatchScalesEveryByte() {
        let everyByte = LabeledImages(
            pixels: (0...255).map(UInt8.init), labels: [0], count: 1, rows: 16, columns: 16
        )
        var pixels = [Float](repeating: -1, count: 256)
        var labels: [Int32] = [-1]
        pixels.withUnsafeMutableBufferPointer { pixelBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                everyByte.fillBatch(indices: CollectionOfOne(0), pixels: pixelBuffer, labels: labelBuffer)
            }
        }
        for value in 0...255 {
            let exact = Double(value) / 255
            #expect(abs(Double(pixels[value]) - exact) <= 1e-7, "byte \(value) became \(pixels[value])")
            #expect(pixels[value] >= 0 && pixels[value] <= 1)
        }
    }

    @Test("fillBatch writes the images at the given indices in order, repeats included, and nothing past the batch")
    func fillBatchPicksIndices() {
        let featureCount = threeImages.featureCount
        var pixels = [Float](repeating: -1, count: 4 * featureCount)
        var labels = [Int32](repeating: -1, count: 4)
        pixels.withUnsafeMutableBufferPointer { pixelBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                // A slice of an array: any Collection of Int will do.
                let order = [7, 2, 0, 2, 7][1...3]
                threeImages.fillBatch(indices: order, pixels: pixelBuffer, labels: labelBuffer)
            }
        }
        let expectedImages: [[UInt8]] = [[200, 100, 50, 25], [0, 255, 51, 102], [200, 100, 50, 25]]
        for (row, image) in expectedImages.enumerated() {
            let written = pixels[row * featureCount..<(row + 1) * featureCount]
            let expected = image.map { Float($0) / 255 }
            #expect(zip(written, expected).allSatisfy { abs($0 - $1) <= 1e-7 }, "row \(row): \(Array(written))")
        }
        #expect(labels == [9, 4, 9, -1])
        #expect(pixels[(3 * featureCount)...].allSatisfy { $0 == -1 })
    }

    @Test("fillBatch with no indices writes nothing")
    func fillBatchEmpty() {
        var pixels: [Float] = [-1]
        var labels: [Int32] = [-1]
        pixels.withUnsafeMutableBufferPointer { pixelBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                threeImages.fillBatch(indices: [], pixels: pixelBuffer, labels: labelBuffer)
            }
        }
        #expect(pixels == [-1])
        #expect(labels == [-1])
    }

    @Test("fillBatch stops the program when the pixel buffer is too small")
    func fillBatchPixelBufferTooSmall() async {
        await #expect(processExitsWith: .failure) {
            let images = LabeledImages(pixels: [1, 2, 3, 4], labels: [0], count: 1, rows: 2, columns: 2)
            let pixels = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3)
            let labels = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 1)
            images.fillBatch(indices: [0], pixels: pixels, labels: labels)
        }
    }

    @Test("fillBatch stops the program on an index outside the images")
    func fillBatchIndexOutOfRange() async {
        await #expect(processExitsWith: .failure) {
            let images = LabeledImages(pixels: [1, 2, 3, 4], labels: [0], count: 1, rows: 2, columns: 2)
            let pixels = UnsafeMutableBufferPointer<Float>.allocate(capacity: 4)
            let labels = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 1)
            images.fillBatch(indices: [1], pixels: pixels, labels: labels)
        }
    }

    @Test("the memberwise initializer stops the program when pixels do not match the shape")
    func initializerChecksShape() async {
        await #expect(processExitsWith: .failure) {
            _ = LabeledImages(pixels: [1, 2, 3], labels: [0], count: 1, rows: 2, columns: 2)
        }
    }

    @Test("prefix keeps the first images and labels and recomputes the class count")
    func prefixKeepsFirstImages() {
        let firstTwo = threeImages.prefix(2)
        #expect(firstTwo.count == 2)
        #expect(firstTwo.pixels == Array(threeImages.pixels[0..<8]))
        #expect(firstTwo.labels == [4, 0])
        #expect(firstTwo.classCount == 5)
        #expect(threeImages.prefix(10) == threeImages)
        #expect(threeImages.prefix(0).count == 0)
        #expect(threeImages.prefix(0).classCount == 0)
    }

    @Test("classCount is the largest label plus one")
    func classCountIsLargestLabelPlusOne() {
        #expect(threeImages.classCount == 10)
    }
}
