import ArgumentParser
import NormKit

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict the classes of IDX images with a saved seed model (MLP or CNN).",
        discussion: "Prints one predicted class index per image, in file order."
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "An IDX images file (e.g. t10k-images-idx3-ubyte[.gz]).")
    var images: String

    @Option(parsing: .unconditional, help: "Predict only the first N images.")
    var count: Int?

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        compute.apply()
        let model = try modelOptions.load()
        let file = try IDXReader.read(path: images, expectedRank: 3)
        let pixelsPerImage = file.dimensions[1] * file.dimensions[2]
        let imageCount = min(count ?? file.dimensions[0], file.dimensions[0])
        // Unlabelled images through the same batching and [0, 1] scaling as training.
        let unlabelled = LabeledImages(pixels: Array(file.elements.prefix(imageCount * pixelsPerImage)),
                                       labels: [UInt8](repeating: 0, count: imageCount), count: imageCount,
                                       rows: file.dimensions[1], columns: file.dimensions[2])
        // The model checks the image size and takes the images in its layout (flat rows or NCHW).
        for predicted in try modelOptions.namingTheFile({ try model.predictedClasses(unlabelled) }) { print(predicted) }
    }
}
