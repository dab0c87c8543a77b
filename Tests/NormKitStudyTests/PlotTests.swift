import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import NormKitNN  // History has no public initializer: fit makes it
@testable import NormKitStudy
import Testing

/// Parses `svg` as XML (fails the test if it is not well-formed) and returns every
/// polyline's `data-series` with its points in pixel coordinates.
func parsedPolylines(_ svg: String) throws -> [(series: String, points: [(Double, Double)])] {
    let document = try XMLDocument(xmlString: svg, options: [])
    let root = try #require(document.rootElement())
    #expect(root.name == "svg")
    var elements: [XMLElement] = []
    func collect(_ element: XMLElement) {
        if element.name == "polyline" { elements.append(element) }
        for child in element.children ?? [] { if let child = child as? XMLElement { collect(child) } }
    }
    collect(root)
    func attribute(_ element: XMLElement, _ name: String) -> String {
        element.attributes?.first { $0.name == name }?.stringValue ?? ""
    }
    return elements.map { element in
        let pairs = attribute(element, "points").split(separator: " ").map { pair in
            let parts = pair.split(separator: ",").map { Double(String($0))! }
            return (parts[0], parts[1])
        }
        return (attribute(element, "data-series"), pairs)
    }
}

@Suite("Line plots")
struct PlotTests {
    let plot = LinePlot(
        title: "Loss & accuracy <per epoch>", xLabel: "epoch", yLabel: "value",
        series: [.init("train \"loss\"", x: [1, 2, 3, 4], y: [2.3, 1.1, 0.7, 0.55], dashed: true),
                 .init("test", x: [1, 2, 3, 4], y: [2.2, 1.3, .nan, 0.8])])

    @Test("the SVG is well-formed XML whose polylines are exactly the CSV's points, mapped by the layout")
    func svgMatchesCSV() throws {
        let lines = try parsedPolylines(plot.svg())
        let rows = plot.csv().split(separator: "\n").dropFirst().map { csvFields(String($0)) }
        #expect(rows.count == 8)
        let layout = plot.layout
        // The NaN breaks "test" into a run of two points and a lone point (drawn as a circle).
        #expect(lines.map(\.series) == ["train \"loss\"", "test"])
        var plotted: [(String, Double, Double)] = []
        for line in lines { for point in line.points { plotted.append((line.series, point.0, point.1)) } }
        let csvPoints = rows.compactMap { row -> (String, Double, Double)? in
            guard let x = Double(row[2]), let y = Double(row[3]), y.isFinite else { return nil }
            return (row[1], x, y)
        }
        let drawnAsLines = csvPoints.filter { !($0.0 == "test" && $0.1 == 4) }
        #expect(plotted.count == drawnAsLines.count)
        for ((series, px, py), (csvSeries, x, y)) in zip(plotted, drawnAsLines) {
            #expect(series == csvSeries)
            #expect(abs(px - layout.pixelX(x)) <= 0.006 && abs(py - layout.pixelY(y)) <= 0.006, "\(series) at x = \(x)")
        }
        #expect(plot.csv().contains("test,3.0,nan"))
    }

    @Test("a row of panels is one well-formed SVG holding every panel's polylines")
    func plotRow() throws {
        let logPlot = LinePlot(title: "sweep", xLabel: "learning rate", yLabel: "accuracy",
                               series: [.init("with BN", x: [0.01, 0.1, 1, 10], y: [0.5, 0.8, 0.85, 0.84])],
                               xScale: .logarithmic, yRange: 0...1)
        let row = PlotRow([plot, logPlot])
        let lines = try parsedPolylines(row.svg())
        #expect(lines.count == 3)
        #expect(row.csv().split(separator: "\n").count == 1 + 8 + 4)
        #expect(logPlot.layout.xTicks == [0.01, 0.1, 1, 10])
        // On a log axis the decades are equally spaced.
        let layout = logPlot.layout
        #expect(abs((layout.pixelX(0.1) - layout.pixelX(0.01)) - (layout.pixelX(10) - layout.pixelX(1))) < 1e-9)
    }

    @Test("nice ticks are 1, 2 or 5 × 10ᵏ apart and cover the range")
    func ticks() {
        #expect(niceTicks(lower: 0, upper: 1) == [0, 0.2, 0.4, 0.6, 0.8, 1])
        #expect(niceTicks(lower: 0, upper: 1500) == [0, 500, 1000, 1500])
        #expect(niceTicks(lower: 1, upper: 3) == [1, 1.5, 2, 2.5, 3])
        #expect(niceTicks(lower: 1, upper: 3, minimumStep: 1) == [1, 2, 3])
        #expect(niceTicks(lower: -3.2, upper: 4.9) == [-2, 0, 2, 4])
        #expect(niceTicks(lower: 37, upper: 50_000) == [10_000, 20_000, 30_000, 40_000, 50_000])
        #expect(tickLabel(50_000, ticks: [0, 50_000]) == "50k")
        #expect(tickLabel(0.25, ticks: [0, 0.25, 0.5]) == "0.25")
        #expect(tickLabel(0.001, ticks: [0.001, 0.01]) == "0.001")
    }

    @Test("train --plot: loss and accuracy panels, training and test lines, each exactly the history's numbers")
    func trainingPlot() throws {
        var history = History()
        history.loss = [0.9, 0.6, 0.5]
        history.accuracy = [0.7, 0.8, 0.83]
        history.validationLoss = [0.7, 0.55, 0.52]
        history.validationAccuracy = [0.76, 0.81, 0.82]
        let row = TrainingPlot.plot(history)
        let lines = try parsedPolylines(row.svg())
        #expect(lines.map { $0.series } == ["training", "test", "training", "test"])
        let expected = [history.loss, history.validationLoss, history.accuracy, history.validationAccuracy]
        for (index, (line, values)) in zip(lines, expected).enumerated() {
            let layout = row.plots[index / 2].layout
            #expect(line.points.map { ($0.1 * 100).rounded() } == values.map { (layout.pixelY($0) * 100).rounded() })
            #expect(line.points.map { ($0.0 * 100).rounded() } == [1.0, 2, 3].map { (layout.pixelX($0) * 100).rounded() })
        }
        #expect(row.plots[0].layout.xTicks == [1, 2, 3])
    }

    @Test("train --plot after --resume puts each point at its own epoch, not at 1, 2, …")
    func resumedTrainingPlot() throws {
        var history = History()
        history.epochs = [3, 4, 5]
        history.loss = [0.5, 0.45, 0.4]
        let row = TrainingPlot.plot(history)
        let line = try #require(try parsedPolylines(row.svg()).first)
        let layout = row.plots[0].layout
        #expect(line.points.map { ($0.0 * 100).rounded() } == [3.0, 4, 5].map { (layout.pixelX($0) * 100).rounded() })
        #expect(layout.xTicks == [3, 4, 5])
    }

    @Test("text is escaped: titles with & and < stay well-formed")
    func escaping() throws {
        #expect(escapeXML("a<b & \"c\"") == "a&lt;b &amp; &quot;c&quot;")
        _ = try XMLDocument(xmlString: plot.svg(), options: [])
    }
}

/// The fields of one CSV line (RFC 4180 quoting: "a ""b""" is a "b").
func csvFields(_ line: String) -> [String] {
    var fields: [String] = [], field = "", quoted = false
    var characters = Array(line)[...]
    while let character = characters.popFirst() {
        if quoted {
            if character == "\"" {
                if characters.first == "\"" { field.append(characters.removeFirst()) } else { quoted = false }
            } else {
                field.append(character)
            }
        } else if character == "\"" {
            quoted = true
        } else if character == "," {
            fields.append(field)
            field = ""
        } else {
            field.append(character)
        }
    }
    return fields + [field]
}
