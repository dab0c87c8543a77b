import Foundation

/// A training set and a test set in the layout of MNIST and Fashion-MNIST: 28×28
/// grey images, one label each, four IDX files with the standard names.
public struct MNISTDataset: Sendable, Equatable {
    /// The training split (60,000 images in the full datasets).
    public let train: LabeledImages
    /// The test split (10,000 images in the full datasets).
    public let test: LabeledImages

    /// Pairs two splits, for example prefixes of a full dataset.
    public init(train: LabeledImages, test: LabeledImages) {
        self.train = train
        self.test = test
    }

    /// The standard file names, without the optional ".gz".
    static let _trainImagesName = "train-images-idx3-ubyte"
    static let _trainLabelsName = "train-labels-idx1-ubyte"
    static let _testImagesName = "t10k-images-idx3-ubyte"
    static let _testLabelsName = "t10k-labels-idx1-ubyte"

    /// Loads the four standard files from `directory`.
    ///
    /// Each of `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` may be plain or end in
    /// ".gz"; when both exist the plain one is used, as it needs no inflating.
    ///
    /// - Parameter directory: the folder holding the files.
    /// - Throws: `IDXError.missingDatasetFile` listing both names tried when a file is
    ///   in neither form, `.noImageData` for a split without images or with images of
    ///   0 rows or columns (valid IDX, but training on it would stop a layer or report
    ///   a loss of 0 over nothing), or whatever reading the files throws.
    public static func load(directory: String) throws(IDXError) -> MNISTDataset {
        let trainImages = try _locate(_trainImagesName, in: directory)
        let trainLabels = try _locate(_trainLabelsName, in: directory)
        let testImages = try _locate(_testImagesName, in: directory)
        let testLabels = try _locate(_testLabelsName, in: directory)
        let train = try LabeledImages(imagesFile: trainImages, labelsFile: trainLabels)
        let test = try LabeledImages(imagesFile: testImages, labelsFile: testLabels)
        for (split, path) in [(train, trainImages), (test, testImages)]
        where split.count == 0 || split.rows == 0 || split.columns == 0 {
            throw .noImageData(path: path, dimensions: [split.count, split.rows, split.columns])
        }
        return MNISTDataset(train: train, test: test)
    }

    /// The slice of Fashion-MNIST shipped inside this module: the first 10,000
    /// training and the first 2,000 test images, in their original order.
    ///
    /// Small enough to ship and to train on in seconds, large enough for a model to
    /// reach a meaningful accuracy; every class has roughly a tenth of the images.
    /// Fashion-MNIST is Copyright (c) 2017 Zalando SE, MIT licence; see the README.md
    /// beside the files (`Sources/NormKitData/Resources/fashion-mnist-slice`).
    ///
    /// - Throws: `IDXError.missingResource` if the files were not bundled, or a read
    ///   error if they were damaged.
    public static func embeddedFashionMNIST() throws(IDXError) -> MNISTDataset {
        let folderName = "fashion-mnist-slice"
        guard let folder = Bundle.module.url(forResource: folderName, withExtension: nil) else {
            throw .missingResource(name: folderName)
        }
        return try load(directory: folder.path)
    }

    /// The Fashion-MNIST class names, indexed by label.
    public static let fashionMNISTClassNames: [String] = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// The path of `name` or `name.gz` in `directory`, preferring the plain file.
    private static func _locate(_ name: String, in directory: String) throws(IDXError) -> String {
        let folder = URL(fileURLWithPath: directory, isDirectory: true)
        let candidates = [name, name + ".gz"]
        for candidate in candidates {
            let path = folder.appendingPathComponent(candidate).path
            if FileManager.default.fileExists(atPath: path) {
                return path
            }
        }
        throw .missingDatasetFile(directory: directory, lookedFor: candidates)
    }
}
