import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import NormKit
import NormKitStudy
import Testing

@Suite("A tiny study run")
struct StudyRunTests {
    @Test("writes the HTML and Markdown pages, an SVG and CSV per figure and results.json; figures match their CSV")
    func tinyStudyWritesEveryFile() throws {
        // 4×4 synthetic images whose brightest pixel is the class, and a narrow network: the
        // study's machinery, not its numbers, is under test (the kernels are too slow unoptimized for 784 → 100).
        let dataset = MNISTDataset(train: syntheticImages(count: 240, seed: 1), test: syntheticImages(count: 100, seed: 2))
        var configuration = StudyConfiguration.quick(seed: 3)
        configuration.hiddenWidths = [8, 8, 8]
        configuration.batchSize = 20
        configuration.figureSteps = 12
        configuration.evaluationCount = 3
        configuration.sweepSteps = 4
        configuration.learningRateGrid = [0.1, 100]
        configuration.sigmaGrid = [0.1, 10]
        configuration.seedModelEpochs = 1
        let report = try Study.run(configuration, dataset: dataset, dataDescription: "240 + 100 synthetic images",
                                   progress: .silent)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("normkit-study-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = try ReportWriter.write(report, to: directory)

        let ids = ["figure1", "learning-rate", "initialization", "gap", "seed-model"]
        #expect(Set(files) == Set(["README.md", "index.html", "results.json"] + ids.flatMap { ["\($0).svg", "\($0).csv"] }))
        for id in ids {
            let svg = try String(contentsOfFile: "\(directory)/\(id).svg", encoding: .utf8)
            let csv = try String(contentsOfFile: "\(directory)/\(id).csv", encoding: .utf8)
            let lines = try parsedPolylines(svg)
            let finiteRows = csv.split(separator: "\n").dropFirst().filter { !$0.hasSuffix(",nan") && !$0.hasSuffix("inf") }
            let circles = svg.components(separatedBy: "<circle data-series").count - 1  // lone points, not markers
            #expect(lines.reduce(0) { $0 + $1.points.count } + circles == finiteRows.count, "\(id)")
        }
        // Figure 1: one evaluation every 4 steps (the last is the end), percentiles ordered.
        #expect(report.results.figure1.map { $0.curve.map(\.step) } == [[4, 8, 12], [4, 8, 12]])
        for run in report.results.figure1 {
            for point in run.curve {
                let p = try #require(point.sigmoidInput)
                #expect(p.p15 <= p.p50 && p.p50 <= p.p85)
            }
        }
        // The sweeps: a pair (with BN, then without) per grid value, varying only the swept setting.
        let learningRateSweep = report.results.learningRateSweep, sigmaSweep = report.results.initializationSweep
        #expect(learningRateSweep.map(\.batchNorm) == [true, false, true, false])
        #expect(learningRateSweep.map(\.learningRate) == [0.1, 0.1, 100, 100])
        #expect(learningRateSweep.allSatisfy { $0.initialStandardDeviation == configuration.initialStandardDeviation })
        #expect(sigmaSweep.map(\.batchNorm) == [true, false, true, false])
        #expect(sigmaSweep.map(\.initialStandardDeviation) == [0.1, 0.1, 10, 10])
        #expect(sigmaSweep.allSatisfy { $0.learningRate == configuration.learningRate })
        #expect(report.sections.count == 5)
        let markdown = try String(contentsOfFile: "\(directory)/README.md", encoding: .utf8)
        for section in report.sections {
            for verdict in section.verdicts { #expect(markdown.contains("**\(verdict.heading):** \(verdict.verdict.text)")) }
        }
        #expect(report.sections[0].verdicts.map(\.label) == ["(a)", "(b, c)"])
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(directory)/results.json")))
        #expect((json as? [String: Any])?["figure1"] != nil)
        _ = try XMLDocument(xmlString: String(contentsOfFile: "\(directory)/index.html", encoding: .utf8)
            .replacingOccurrences(of: "<!DOCTYPE html>", with: ""), options: [])
    }
}

/// `count` 4×4 images: noise below 100 and pixel `label` at 255, labels 0…9 in turn.
private func syntheticImages(count: Int, seed: UInt64) -> LabeledImages {
    var generator = SeededGenerator(seed: seed)
    var pixels: [UInt8] = [], labels: [UInt8] = []
    for index in 0..<count {
        let label = index % 10
        for pixel in 0..<16 { pixels.append(pixel == label ? 255 : UInt8(generator.next() % 100)) }
        labels.append(UInt8(label))
    }
    return LabeledImages(pixels: pixels, labels: labels, count: count, rows: 4, columns: 4)
}
