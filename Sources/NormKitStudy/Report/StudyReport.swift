/// The outcome of `normkit study`: sections with figures, tables and
/// verdicts, plus every raw number (`results`) for the JSON file.
public struct StudyReport: Sendable {
    public var title: String
    /// Setup lines: data, network, optimizer, σ, steps, seed, time.
    public var setup: [String]
    public var sections: [ReportSection]
    public var results: StudyResults
}

public struct ReportSection: Sendable {
    /// A file-name-safe identifier, e.g. "figure1"; names the section's SVG and CSV.
    public var id: String
    public var title: String
    /// What was run and how to read the figure.
    public var paragraphs: [String]
    public var figure: PlotRow?
    public var table: ReportTable?
    /// The section's verdicts; Figure 1 has one for (a) and one for (b, c), the others one each.
    public var verdicts: [LabeledVerdict]

    /// The first (main) verdict.
    public var verdict: Verdict { verdicts[0].verdict }
}

/// A verdict with the part of the section it judges ("(a)", or "" for the whole section).
public struct LabeledVerdict: Sendable {
    public var label: String
    public var verdict: Verdict

    public init(_ label: String, _ verdict: Verdict) {
        self.label = label
        self.verdict = verdict
    }

    /// The verdict on a whole section.
    public init(_ verdict: Verdict) { self.init("", verdict) }

    /// "Verdict (a)" or "Verdict".
    public var heading: String { label.isEmpty ? "Verdict" : "Verdict \(label)" }
}

public struct ReportTable: Sendable {
    public var header: [String]
    public var rows: [[String]]
}

/// The raw numbers behind the report.
public struct StudyResults: Sendable, Codable {
    public var configuration: StudyConfiguration
    public var data: String
    public var figure1: [SigmoidRunResult]
    public var learningRateSweep: [SigmoidRunResult]
    public var initializationSweep: [SigmoidRunResult]
    public var seedModel: [SeedModelResult]
    public var verdicts: [String: Verdict]
    public var elapsedSeconds: Double
}

/// Per-epoch accuracies of the seed model.
public struct SeedModelResult: Sendable, Codable {
    public var batchNorm: Bool
    public var trainAccuracy: [Double]
    public var testAccuracy: [Double]
    public var testLoss: [Double]
}
