import ArgumentParser
import NormKit
import NormKitStudy

struct StudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "Show on real data what batch normalization does: paired runs with and without BN, written up as a report.",
        discussion: """
            Five sections, each ending with a verdict computed from its numbers: (1) the BN paper's Figure 1 \
            (3 × 100 sigmoid units, batches of 60: test accuracy and the 15/50/85th percentiles of one sigmoid's \
            input over training), (2) learning-rate tolerance, (3) initialization sensitivity, (4) the train–test \
            gap, (5) the seed model with and without BN. Writes index.html and README.md with SVG figures, one CSV \
            per figure and results.json into --output.
            """
    )

    @Option(help: "A directory of MNIST-format IDX files (default: the embedded Fashion-MNIST slice).")
    var data: String?

    @Option(parsing: .unconditional, help: "Training steps of the Figure-1 runs; the sweeps a fifth each, 300…5000 (default 10000; the paper: 50000).")
    var steps: Int?

    @Flag(help: "A smaller study that finishes in under three minutes (2500 Figure-1 steps, coarser grids, 3 seed-model epochs).")
    var quick = false

    @Option(help: "The report folder.")
    var output = "study-report"

    @Option(parsing: .unconditional, help: "Seed for initial weights and batch order (shared by each pair of runs).")
    var seed: UInt64 = 0

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if let steps, steps < 10 { throw ValidationError("--steps must be at least 10, got \(steps)") }
    }

    func run() throws {
        compute.apply()
        // Before the experiments: the report is written only after minutes of training.
        try ReportWriter.createFolder(output)
        let dataset = try data.map { try MNISTDataset.load(directory: $0) } ?? MNISTDataset.embeddedFashionMNIST()
        var configuration = quick ? StudyConfiguration.quick(seed: seed) : StudyConfiguration.standard(seed: seed)
        if let steps {
            let base = StudyConfiguration.standard(figureSteps: steps, seed: seed)
            (configuration.figureSteps, configuration.sweepSteps) = (base.figureSteps, base.sweepSteps)
        }
        let description = data ?? "the embedded Fashion-MNIST slice"
        print("data: \(description): \(dataset.train.count) training, \(dataset.test.count) test images; threads: \(Threading.count)")
        let report = try Study.run(configuration, dataset: dataset, dataDescription: description)
        let files = try ReportWriter.write(report, to: output)
        print("report: \(output)/index.html (\(files.count) files: \(files.joined(separator: ", ")))")
    }
}
