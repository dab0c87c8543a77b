import NormKit

/// Runs the batch-normalization study: paired experiments with and without
/// BN on one data set, each section ending with a verdict computed from its numbers.
public enum Study {
    static let sectionCount = 5

    /// - Parameters:
    ///   - dataset: MNIST-format training and test images.
    ///   - dataDescription: where the data came from, for the report.
    ///   - progress: a bar on a terminal, one line per section otherwise.
    public static func run(_ configuration: StudyConfiguration, dataset: MNISTDataset, dataDescription: String,
                           progress: ProgressReporter.Style = .automatic) throws -> StudyReport {
        let started = monotonicSeconds()
        let data = StudyData(dataset)
        var tracker = SectionProgress(reporter: ProgressReporter(style: progress))
        let seed = configuration.seed

        // 1 and 4: the Figure-1 pair, evaluated along the way.
        tracker.begin(1, "Figure 1", steps: 2 * configuration.figureSteps)
        let figureRuns = try [true, false].map { batchNorm in
            try tracker.run(SigmoidRunConfiguration(
                batchNorm: batchNorm, hiddenWidths: configuration.hiddenWidths, steps: configuration.figureSteps, batchSize: configuration.batchSize,
                learningRate: configuration.learningRate, initialStandardDeviation: configuration.initialStandardDeviation,
                seed: seed, evaluationInterval: configuration.evaluationInterval), data: data)
        }
        let figure1 = figure1Section(configuration, runs: figureRuns)
        tracker.end(figure1.verdicts)

        // 2 and 3 sweep one setting of the Figure-1 network: a pair of runs (with BN, then without) per grid value.
        func sweep(_ grid: [Double], setting: (inout SigmoidRunConfiguration, Double) -> Void) throws -> [SigmoidRunResult] {
            try grid.flatMap { value in
                try [true, false].map { batchNorm in
                    var run = SigmoidRunConfiguration(
                        batchNorm: batchNorm, hiddenWidths: configuration.hiddenWidths, steps: configuration.sweepSteps,
                        batchSize: configuration.batchSize, learningRate: configuration.learningRate,
                        initialStandardDeviation: configuration.initialStandardDeviation, seed: seed)
                    setting(&run, value)
                    return try tracker.run(run, data: data)
                }
            }
        }

        // 2: learning rates.
        tracker.begin(2, "learning rates", steps: 2 * configuration.learningRateGrid.count * configuration.sweepSteps)
        let learningRateRuns = try sweep(configuration.learningRateGrid) { $0.learningRate = $1 }
        let learningRates = learningRateSection(configuration, runs: learningRateRuns, classCount: data.classCount)
        tracker.end(learningRates.verdicts)

        // 3: initial scales.
        tracker.begin(3, "initialization", steps: 2 * configuration.sigmaGrid.count * configuration.sweepSteps)
        let sigmaRuns = try sweep(configuration.sigmaGrid) { $0.initialStandardDeviation = $1 }
        let initialization = initializationSection(configuration, runs: sigmaRuns, classCount: data.classCount)
        tracker.end(initialization.verdicts)

        tracker.begin(4, "train–test gap", steps: 0)
        let gap = gapSection(configuration, runs: figureRuns, trainProbeCount: data.trainProbe.count)
        tracker.end(gap.verdicts)

        // 5: the seed model.
        let seedBatchSize = 32
        let stepsPerEpoch = dataset.train.count / seedBatchSize
        tracker.begin(5, "seed model", steps: 2 * configuration.seedModelEpochs * stepsPerEpoch)
        let seedRuns = try [true, false].map { batchNorm in
            try runSeedModel(batchNorm: batchNorm, epochs: configuration.seedModelEpochs, batchSize: seedBatchSize,
                             dataset: dataset, seed: seed) { tracker.step(loss: $0) }
        }
        let seedModel = seedModelSection(configuration, runs: seedRuns)
        tracker.end(seedModel.verdicts)

        let sections = [figure1, learningRates, initialization, gap, seedModel]
        let elapsed = monotonicSeconds() - started
        let setup = [
            "Data: \(dataDescription) (\(grouped(dataset.train.count)) training, \(grouped(dataset.test.count)) test images).",
            "Sections 1–4: \(data.train.featureCount) → \(configuration.hiddenWidths.map(String.init).joined(separator: " → ")) "
                + "(each linear → BN or not → sigmoid) → \(data.classCount) logits, softmax "
                + "cross-entropy, mini-batches of \(configuration.batchSize), plain SGD (no momentum, no weight decay); "
                + "weights from N(0, σ²), biases 0 (no bias before BN: β replaces it).",
            "Learning rate \(number(configuration.learningRate)) and σ \(number(configuration.initialStandardDeviation)) "
                + "unless a section sweeps them; the paper does not give them.",
            "Figure-1 runs: \(grouped(configuration.figureSteps)) steps (the paper: 50,000), evaluated every "
                + "\(grouped(configuration.evaluationInterval)) steps in inference mode; sweeps: \(grouped(configuration.sweepSteps)) steps per run.",
            "Paired runs share the seed (\(seed)): the same initial weights and the same batches.",
            "Took \(fixed(elapsed, 0)) s with \(Threading.count) threads.",
        ]
        var verdicts: [String: Verdict] = [:]
        for section in sections {
            verdicts[section.id] = section.verdict
            for part in section.verdicts.dropFirst() { verdicts["\(section.id) \(part.label)"] = part.verdict }
        }
        let results = StudyResults(configuration: configuration, data: dataDescription, figure1: figureRuns,
                                   learningRateSweep: learningRateRuns, initializationSweep: sigmaRuns, seedModel: seedRuns,
                                   verdicts: verdicts, elapsedSeconds: elapsed)
        return StudyReport(title: "What batch normalization does: a NormKit study", setup: setup, sections: sections,
                           results: results)
    }

    // MARK: Sections

    static func figure1Section(_ configuration: StudyConfiguration, runs: [SigmoidRunResult]) -> ReportSection {
        let (bn, no) = (runs[0], runs[1])
        let accuracy = LinePlot(
            title: "(a) Test accuracy", xLabel: "training step", yLabel: "test accuracy",
            series: [.init("with BN", points: bn.curve.map { PlotPoint(x: Double($0.step), y: $0.testAccuracy) }),
                     .init("without BN", points: no.curve.map { PlotPoint(x: Double($0.step), y: $0.testAccuracy) })])
        func distribution(_ run: SigmoidRunResult, _ title: String) -> LinePlot {
            let triples = run.curve.map { $0.sigmoidInput ?? PercentileTriple(p15: .nan, p50: .nan, p85: .nan) }
            let x = run.curve.map { Double($0.step) }
            return LinePlot(title: title, xLabel: "training step", yLabel: "input to the sigmoid",
                            series: [.init("15th percentile", x: x, y: triples.map(\.p15), color: "#7fa7d0"),
                                     .init("50th", x: x, y: triples.map(\.p50), color: "#1f4e8c"),
                                     .init("85th", x: x, y: triples.map(\.p85), color: "#7fa7d0")])
        }
        let speed = Verdicts.speedup(steps: bn.curve.map(\.step), withBN: bn.curve.map(\.testAccuracy),
                                     withoutBN: no.curve.map(\.testAccuracy))
        let stability = stabilityVerdict(runs)
        return ReportSection(
            id: "figure1", title: "1. The paper's Figure 1",
            paragraphs: [
                "(a) Test accuracy against training steps, with and without BN. (b, c) The 15th, 50th and 85th "
                    + "percentiles, over the test set, of the input to one sigmoid of the last hidden layer (unit 0): "
                    + "the linear layer's output without BN, the BN layer's output with it. They are measured in inference "
                    + "mode, so with BN they follow the running statistics, which wobble from batch to batch.",
            ],
            figure: PlotRow([accuracy, distribution(no, "(b) Without BN"), distribution(bn, "(c) With BN")]),
            table: nil, verdicts: [LabeledVerdict("(a)", speed), LabeledVerdict("(b, c)", stability)])
    }

    static func stabilityVerdict(_ runs: [SigmoidRunResult]) -> Verdict {
        let bn = runs[0].curve.compactMap(\.sigmoidInput), no = runs[1].curve.compactMap(\.sigmoidInput)
        guard !bn.isEmpty, !no.isEmpty else {
            return .notSupported("a run diverged before its sigmoid inputs could be measured.")
        }
        return Verdicts.stability(withBN: bn, withoutBN: no)
    }

    static func sweepTable(_ label: String, grid: [Double], runs: [SigmoidRunResult], threshold: Double) -> ReportTable {
        ReportTable(header: [label, "with BN: test accuracy", "trains", "without BN: test accuracy", "trains"],
                    rows: grid.indices.map { index in
                        let (bn, no) = (runs[2 * index], runs[2 * index + 1])
                        func accuracy(_ run: SigmoidRunResult) -> String {
                            run.divergedAtStep.map { "diverged at step \($0)" } ?? percent(run.final.testAccuracy)
                        }
                        return [number(grid[index]), accuracy(bn), bn.trains(threshold: threshold) ? "yes" : "no",
                                accuracy(no), no.trains(threshold: threshold) ? "yes" : "no"]
                    })
    }

    /// Accuracy of each run for a sweep plot; a diverged run counts as chance (NaN would hide it).
    static func sweepPlot(title: String, xLabel: String, grid: [Double], runs: [SigmoidRunResult], classes: Int) -> LinePlot {
        func accuracy(_ run: SigmoidRunResult) -> Double { run.finalTestAccuracy(classCount: classes) }
        let x = grid
        return LinePlot(title: title, xLabel: xLabel, yLabel: "final test accuracy",
                        series: [.init("with BN", x: x, y: grid.indices.map { accuracy(runs[2 * $0]) }, markers: true),
                                 .init("without BN", x: x, y: grid.indices.map { accuracy(runs[2 * $0 + 1]) }, markers: true)],
                        xScale: .logarithmic, yRange: 0...1, width: 520)
    }

    static func learningRateSection(_ configuration: StudyConfiguration, runs: [SigmoidRunResult],
                                    classCount: Int) -> ReportSection {
        let grid = configuration.learningRateGrid, threshold = configuration.trainsThreshold
        let verdict = Verdicts.learningRateTolerance(
            grid: grid, trainsWithBN: grid.indices.map { runs[2 * $0].trains(threshold: threshold) },
            trainsWithoutBN: grid.indices.map { runs[2 * $0 + 1].trains(threshold: threshold) })
        return ReportSection(
            id: "learning-rate", title: "2. Learning-rate tolerance",
            paragraphs: ["The Figure-1 network (σ \(number(configuration.initialStandardDeviation))) trained for "
                + "\(grouped(configuration.sweepSteps)) steps of plain SGD at each learning rate. A run trains when its loss "
                + "stays finite and its final test accuracy reaches \(percent(threshold, digits: 0)) (chance is \(percent(1 / Double(classCount), digits: 0))); "
                + "a diverged run is plotted at chance."],
            figure: PlotRow([sweepPlot(title: "Final test accuracy against learning rate", xLabel: "learning rate (SGD)",
                                       grid: grid, runs: runs, classes: classCount)]),
            table: sweepTable("learning rate", grid: grid, runs: runs, threshold: threshold),
            verdicts: [LabeledVerdict(verdict)])
    }

    static func initializationSection(_ configuration: StudyConfiguration, runs: [SigmoidRunResult],
                                      classCount: Int) -> ReportSection {
        let grid = configuration.sigmaGrid
        func accuracy(_ run: SigmoidRunResult) -> Double { run.finalTestAccuracy(classCount: classCount) }
        let verdict = Verdicts.initializationSensitivity(
            sigmas: grid, withBN: grid.indices.map { accuracy(runs[2 * $0]) },
            withoutBN: grid.indices.map { accuracy(runs[2 * $0 + 1]) })
        return ReportSection(
            id: "initialization", title: "3. Initialization sensitivity",
            paragraphs: ["The Figure-1 network trained for \(grouped(configuration.sweepSteps)) steps (learning rate "
                + "\(number(configuration.learningRate))) from weights drawn with each σ. A diverged run counts as chance."],
            figure: PlotRow([sweepPlot(title: "Final test accuracy against initial σ", xLabel: "σ of the initial weights",
                                       grid: grid, runs: runs, classes: classCount)]),
            table: sweepTable("σ", grid: grid, runs: runs, threshold: configuration.trainsThreshold),
            verdicts: [LabeledVerdict(verdict)])
    }

    static func gapSection(_ configuration: StudyConfiguration, runs: [SigmoidRunResult], trainProbeCount: Int) -> ReportSection {
        let (bn, no) = (runs[0], runs[1])
        func series(_ run: SigmoidRunResult, _ name: String, _ color: String) -> [LinePlot.Series] {
            [.init("\(name), train", points: run.curve.map { PlotPoint(x: Double($0.step), y: $0.trainAccuracy) },
                   dashed: true, color: color),
             .init("\(name), test", points: run.curve.map { PlotPoint(x: Double($0.step), y: $0.testAccuracy) }, color: color)]
        }
        let plot = LinePlot(title: "Train and test accuracy (Figure-1 runs)", xLabel: "training step", yLabel: "accuracy",
                            series: series(bn, "with BN", "#1f77b4") + series(no, "without BN", "#d62728"), width: 520)
        let verdict = Verdicts.generalizationGap(trainWithBN: bn.final.trainAccuracy, testWithBN: bn.final.testAccuracy,
                                                 trainWithoutBN: no.final.trainAccuracy, testWithoutBN: no.final.testAccuracy)
        return ReportSection(
            id: "gap", title: "4. Regularization: the train–test gap",
            paragraphs: ["Accuracy of the Figure-1 runs on the first \(grouped(trainProbeCount)) training images (dashed) and on the test set "
                + "(solid), both in inference mode. The gap is taken at the last step. Training sets of other sizes or more "
                + "steps may change it: BN also fits faster, which widens a gap at a fixed step budget."],
            figure: PlotRow([plot]), table: nil, verdicts: [LabeledVerdict(verdict)])
    }

    static func seedModelSection(_ configuration: StudyConfiguration, runs: [SeedModelResult]) -> ReportSection {
        let (bn, no) = (runs[0], runs[1])
        let epochs = (1...bn.testAccuracy.count).map(Double.init)
        let plot = LinePlot(
            title: "Seed model: accuracy per epoch", xLabel: "epoch", yLabel: "accuracy",
            series: [.init("with BN, train", x: epochs, y: bn.trainAccuracy, dashed: true, color: "#1f77b4"),
                     .init("with BN, test", x: epochs, y: bn.testAccuracy, color: "#1f77b4"),
                     .init("without BN, train", x: epochs, y: no.trainAccuracy, dashed: true, color: "#d62728"),
                     .init("without BN, test", x: epochs, y: no.testAccuracy, color: "#d62728")],
            integerXTicks: true, width: 520)
        return ReportSection(
            id: "seed-model", title: "5. The seed model",
            paragraphs: ["`normkit train`'s model (784 → Linear 64 → BatchNorm → ReLU → Linear 10 → softmax) against the same "
                + "without BatchNorm: Adam 1e-3, batches of 32, \(configuration.seedModelEpochs) epochs, same seed. Train accuracy "
                + "is the running accuracy during each epoch (training mode), test accuracy is measured after it."],
            figure: PlotRow([plot]),
            table: ReportTable(header: ["epoch", "with BN: test", "without BN: test"],
                               rows: bn.testAccuracy.indices.map { ["\($0 + 1)", percent(bn.testAccuracy[$0]), percent(no.testAccuracy[$0])] }),
            verdicts: [LabeledVerdict(Verdicts.seedModel(withBN: bn.testAccuracy, withoutBN: no.testAccuracy))])
    }
}

/// The seed model trained the way `normkit train` does, measured after every epoch.
func runSeedModel(batchNorm: Bool, epochs: Int, batchSize: Int, dataset: MNISTDataset, seed: UInt64,
                  stepFinished: (Double) -> Void) throws -> SeedModelResult {
    GlobalRandom.seed(seed)
    let model = SeedMLP(inputFeatures: dataset.train.featureCount, classes: max(dataset.train.classCount, 10), batchNorm: batchNorm)
    let optimizer = Adam(model.trainableParameters(), learningRate: 1e-3)
    let loss = SparseCategoricalCrossentropy()
    model.compile(optimizer: optimizer, loss: loss, metrics: [.accuracy])  // `evaluate` then uses this loss
    let loader = DataLoader(dataset.train, batchSize: batchSize, shuffle: true, dropsLastPartialBatch: true,
                            generator: SeededGenerator(seed: seed &+ 1))
    var result = SeedModelResult(batchNorm: batchNorm, trainAccuracy: [], testAccuracy: [], testLoss: [])
    for _ in 0..<epochs {
        model.train()
        var correct = 0, seen = 0
        for (inputs, labels) in loader {
            let output = try model(inputs)
            let value = loss(output, labels)
            optimizer.zeroGrad()
            value.backward()
            optimizer.step()
            correct += zip(output.argmax(axis: -1), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
            seen += labels.count
            stepFinished(Double(value.scalar))
        }
        let evaluation = try model.evaluate(dataset.test)
        result.trainAccuracy.append(Double(correct) / Double(max(seen, 1)))
        result.testAccuracy.append(evaluation.accuracy)
        result.testLoss.append(evaluation.loss)
    }
    return result
}

/// Progress over the study's sections: a bar per section on a terminal, one line per section otherwise.
struct SectionProgress {
    var reporter: ProgressReporter
    var section = 0, steps = 0, done = 0
    var name = ""
    var started = 0.0

    mutating func begin(_ section: Int, _ name: String, steps: Int) {
        (self.section, self.name, self.steps, done, started) = (section, name, max(steps, 1), 0, monotonicSeconds())
    }

    mutating func step(loss: Double) {
        done += 1
        reporter.stepFinished(epoch: section, epochs: Study.sectionCount, step: min(done, steps), steps: steps,
                              started: started, loss: loss, accuracy: nil, phase: "Section")
    }

    /// One run, its steps counted towards the section.
    mutating func run(_ configuration: SigmoidRunConfiguration, data: StudyData) throws -> SigmoidRunResult {
        let before = done
        var progress = self
        let result = try runSigmoidNetwork(configuration, data: data) { step, loss in
            progress.done = before + step - 1
            progress.step(loss: loss)
        }
        reporter = progress.reporter
        done = before + configuration.steps
        return result
    }

    mutating func end(_ verdicts: [LabeledVerdict]) {
        reporter.epochFinished("Section \(section)/\(Study.sectionCount) \(name) - \(fixed(monotonicSeconds() - started, 1))s - "
            + verdicts.map { ($0.label.isEmpty ? "" : "\($0.label) ") + $0.verdict.text }.joined(separator: " "))
    }
}
