import Foundation
import NormKitData
import Testing

/// Where Debian's `dataset-fashion-mnist` package puts the full dataset.
private let debianFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

@Suite("MNISTDataset")
struct MNISTDatasetTests {
    @Test("the embedded Fashion-MNIST slice holds 10,000 + 2,000 28×28 images with labels below 10")
    func embeddedSliceLoads() throws {
        let dataset = try MNISTDataset.embeddedFashionMNIST()

        #expect(dataset.train.count == 10_000)
        #expect(dataset.test.count == 2_000)
        for split in [dataset.train, dataset.test] {
            #expect(split.rows == 28)
            #expect(split.columns == 28)
            #expect(split.pixels.count == split.count * 784)
            #expect(split.labels.allSatisfy { $0 < 10 })
            #expect(split.classCount == MNISTDataset.fashionMNISTClassNames.count)
        }
    }

    @Test("the embedded slice has every class at close to a tenth of each split")
    func embeddedSliceIsBalanced() throws {
        let dataset = try MNISTDataset.embeddedFashionMNIST()
        for split in [dataset.train, dataset.test] {
            var perClass = [Int](repeating: 0, count: 10)
            for label in split.labels {
                perClass[Int(label)] += 1
            }
            let share = perClass.map { Double($0) / Double(split.count) }
            #expect(share.allSatisfy { $0 > 0.075 && $0 < 0.125 }, "class shares \(share)")
        }
    }

    @Test("there are ten class names, in label order")
    func classNames() {
        #expect(MNISTDataset.fashionMNISTClassNames.count == 10)
        #expect(MNISTDataset.fashionMNISTClassNames.first == "T-shirt/top")
        #expect(MNISTDataset.fashionMNISTClassNames.last == "Ankle boot")
    }

    @Test("load(directory:) finds plain and .gz files and prefers the plain one when both exist")
    func loadMixesPlainAndGzip() throws {
        let scratch = try ScratchDirectory()
        let trainPixels = patternedBytes(count: 3 * 4, seed: 1)
        let testPixels = patternedBytes(count: 2 * 4, seed: 2)
        let trainImagesFile = gzipCompressed(idxFile(dimensions: [3, 2, 2], elements: trainPixels))
        try scratch.write(trainImagesFile, to: "train-images-idx3-ubyte.gz")
        try scratch.write(idxFile(dimensions: [3], elements: [0, 1, 2]), to: "train-labels-idx1-ubyte")
        try scratch.write(idxFile(dimensions: [2, 2, 2], elements: testPixels), to: "t10k-images-idx3-ubyte")
        try scratch.write(gzipCompressed(idxFile(dimensions: [2], elements: [2, 1])), to: "t10k-labels-idx1-ubyte.gz")
        // A broken .gz beside a good plain file must not be read.
        try scratch.write([0x1f, 0x8b, 0xFF], to: "t10k-images-idx3-ubyte.gz")

        let dataset = try MNISTDataset.load(directory: scratch.url.path)

        #expect(dataset.train == LabeledImages(pixels: trainPixels, labels: [0, 1, 2], count: 3, rows: 2, columns: 2))
        #expect(dataset.test == LabeledImages(pixels: testPixels, labels: [2, 1], count: 2, rows: 2, columns: 2))
    }

    @Test("load(directory:) refuses a split with no images, or with images of 0 rows or columns, naming the file",
          arguments: [([0, 28, 28], "t10k"), ([2, 0, 28], "train"), ([2, 28, 0], "train")])
    func loadRefusesEmptySplits(shape: [Int], refused: String) throws {
        let scratch = try ScratchDirectory()
        // The split under test has `shape`; the other holds 2 valid images.
        let (train, test) = refused == "train" ? (shape, [2, 28, 28]) : ([2, 28, 28], shape)
        for (name, shape) in [("train", train), ("t10k", test)] {
            try scratch.write(idxFile(dimensions: shape, elements: patternedBytes(count: shape.reduce(1, *))),
                              to: "\(name)-images-idx3-ubyte")
            try scratch.write(idxFile(dimensions: [shape[0]], elements: [UInt8](repeating: 1, count: shape[0])),
                              to: "\(name)-labels-idx1-ubyte")
        }
        let error = try #require(throws: IDXError.self) { try MNISTDataset.load(directory: scratch.url.path) }
        #expect(error == .noImageData(path: scratch.path("\(refused)-images-idx3-ubyte"), dimensions: shape))
        #expect(error.description.contains("\(refused)-images-idx3-ubyte") && error.description.contains("no image data"))
    }

    @Test("load(directory:) on a folder without the files is missingDatasetFile listing the names tried")
    func loadReportsMissingFile() throws {
        let scratch = try ScratchDirectory()
        let error = #expect(throws: IDXError.self) {
            try MNISTDataset.load(directory: scratch.url.path)
        }
        #expect(
            error == .missingDatasetFile(
                directory: scratch.url.path, lookedFor: ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]
            )
        )
        #expect(error?.description.contains("train-images-idx3-ubyte.gz") == true)
        #expect(error?.description.contains(scratch.url.path) == true)
    }

    // Runs only where Debian's dataset-fashion-mnist is installed; CI installs it, so
    // there this test runs rather than being skipped.
    @Test(
        "load(directory:) reads Debian's full Fashion-MNIST, and the embedded slice is its prefix",
        .enabled(
            if: FileManager.default.fileExists(atPath: debianFashionMNISTDirectory),
            "needs Debian's dataset-fashion-mnist package in \(debianFashionMNISTDirectory)"
        )
    )
    func loadDebianFashionMNIST() throws {
        let full = try MNISTDataset.load(directory: debianFashionMNISTDirectory)

        #expect(full.train.count == 60_000)
        #expect(full.test.count == 10_000)
        #expect(full.train.rows == 28 && full.train.columns == 28)
        #expect(full.test.rows == 28 && full.test.columns == 28)
        #expect(full.train.classCount == 10)
        #expect(full.test.classCount == 10)

        let embedded = try MNISTDataset.embeddedFashionMNIST()
        #expect(embedded.train == full.train.prefix(10_000))
        #expect(embedded.test == full.test.prefix(2_000))
    }
}
