import Foundation

/// A line plot with several series, nice axis ticks and a legend, rendered as
/// hand-written SVG (no plotting library is in the package set, and a line
/// plot needs little: a frame, ticks, polylines and text).
///
/// The same value writes the CSV of its data (`csv()`), so a figure and its
/// raw numbers cannot disagree. Non-finite points (a diverged run) break a
/// line instead of bending the axes.
public struct LinePlot: Sendable {
    /// One named line.
    public struct Series: Sendable {
        public var name: String
        public var points: [PlotPoint]
        /// A dashed line, e.g. for training curves beside solid test curves.
        public var dashed: Bool
        /// A CSS colour; nil picks the next one from the palette.
        public var color: String?
        /// A dot at every point, for sparse grids (sweeps).
        public var markers: Bool

        public init(_ name: String, points: [PlotPoint], dashed: Bool = false, color: String? = nil, markers: Bool = false) {
            self.name = name
            self.points = points
            self.dashed = dashed
            self.color = color
            self.markers = markers
        }

        public init(_ name: String, x: [Double], y: [Double], dashed: Bool = false, color: String? = nil,
                    markers: Bool = false) {
            precondition(x.count == y.count, "Series \(name): \(x.count) x values but \(y.count) y values")
            self.init(name, points: zip(x, y).map { PlotPoint(x: $0, y: $1) }, dashed: dashed, color: color, markers: markers)
        }
    }

    public enum Scale: String, Sendable { case linear, logarithmic }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var xScale: Scale
    /// Fixed y range (e.g. 0…1 for accuracy); nil fits the data.
    public var yRange: ClosedRange<Double>?
    /// Whole-number x ticks only (epochs).
    public var integerXTicks: Bool
    public var width: Double
    public var height: Double

    public init(title: String, xLabel: String, yLabel: String, series: [Series] = [], xScale: Scale = .linear,
                yRange: ClosedRange<Double>? = nil, integerXTicks: Bool = false, width: Double = 440, height: Double = 330) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.xScale = xScale
        self.yRange = yRange
        self.integerXTicks = integerXTicks
        self.width = width
        self.height = height
    }

    /// Tableau-like colours that stay distinct in grey print.
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    func color(ofSeries index: Int) -> String {
        series[index].color ?? Self.palette[index % Self.palette.count]
    }

    // MARK: Layout

    /// Where the data land in the SVG: the plot area and the data → pixel maps.
    public struct Layout: Sendable {
        public let left: Double, right: Double, top: Double, bottom: Double
        public let xDomain: ClosedRange<Double>, yDomain: ClosedRange<Double>
        public let xScale: Scale
        public let xTicks: [Double], yTicks: [Double]

        /// Horizontal pixel of data x.
        public func pixelX(_ x: Double) -> Double {
            let t: Double
            switch xScale {
            case .linear: t = (x - xDomain.lowerBound) / (xDomain.upperBound - xDomain.lowerBound)
            case .logarithmic:
                t = (log10(x) - log10(xDomain.lowerBound)) / (log10(xDomain.upperBound) - log10(xDomain.lowerBound))
            }
            return left + t * (right - left)
        }

        /// Vertical pixel of data y (SVG y grows downwards).
        public func pixelY(_ y: Double) -> Double {
            bottom - (y - yDomain.lowerBound) / (yDomain.upperBound - yDomain.lowerBound) * (bottom - top)
        }
    }

    /// Legend rows: entries wrap to the plot area's width.
    func legendRows(areaWidth: Double) -> [[Int]] {
        var rows: [[Int]] = [[]]
        var used = 0.0
        for index in series.indices {
            let entry = legendEntryWidth(index)
            if used + entry > areaWidth, !rows[rows.count - 1].isEmpty {
                rows.append([])
                used = 0
            }
            rows[rows.count - 1].append(index)
            used += entry
        }
        return series.isEmpty ? [] : rows
    }

    func legendEntryWidth(_ index: Int) -> Double { 34 + Double(series[index].name.count) * 6.6 + 14 }

    public var layout: Layout {
        let left = 62.0, right = width - 28
        let legendLines = Double(legendRows(areaWidth: right - left).count)
        let top = 34.0, bottom = height - 46 - 18 * legendLines
        let finite = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (xScale == .linear || $0.x > 0) }
        let xs = finite.map(\.x), ys = finite.map(\.y)
        let xDomain: ClosedRange<Double>, xTicks: [Double]
        switch xScale {
        case .linear:
            (xDomain, xTicks) = niceAxis(lower: xs.min() ?? 0, upper: xs.max() ?? 1, padToTicks: false,
                                         minimumStep: integerXTicks ? 1 : 0)
        case .logarithmic:
            (xDomain, xTicks) = logarithmicAxis(lower: xs.min() ?? 1, upper: xs.max() ?? 10)
        }
        let yDomain: ClosedRange<Double>, yTicks: [Double]
        if let yRange {
            (yDomain, yTicks) = (yRange, niceTicks(lower: yRange.lowerBound, upper: yRange.upperBound))
        } else {
            (yDomain, yTicks) = niceAxis(lower: ys.min() ?? 0, upper: ys.max() ?? 1, padToTicks: true)
        }
        return Layout(left: left, right: right, top: top, bottom: bottom, xDomain: xDomain, yDomain: yDomain,
                      xScale: xScale, xTicks: xTicks, yTicks: yTicks)
    }

    // MARK: SVG

    /// A standalone SVG document; `idPrefix` keeps ids unique when several SVGs are inlined in one page.
    public func svg(idPrefix: String = "plot") -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(format(width))\" height=\"\(format(height))\" "
            + "viewBox=\"0 0 \(format(width)) \(format(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
            + svgBody(idPrefix: idPrefix) + "</svg>\n"
    }

    /// The plot's elements, in its own coordinates (0…width, 0…height).
    /// `idPrefix` keeps element ids unique when several plots share one document.
    func svgBody(idPrefix: String) -> String {
        let frame = layout
        let (left, right, top, bottom) = (frame.left, frame.right, frame.top, frame.bottom)
        var out = "<rect x=\"0\" y=\"0\" width=\"\(format(width))\" height=\"\(format(height))\" fill=\"white\"/>\n"
        out += text(title, x: (left + right) / 2, y: 20, size: 14, anchor: "middle", weight: "bold")
        // Grid and ticks.
        for tick in frame.yTicks {
            let y = frame.pixelY(tick)
            out += line(left, y, right, y, stroke: "#e4e4e4")
            out += text(tickLabel(tick, ticks: frame.yTicks), x: left - 6, y: y + 4, size: 11, anchor: "end")
        }
        for tick in frame.xTicks {
            let x = frame.pixelX(tick)
            out += line(x, top, x, bottom, stroke: "#e4e4e4")
            // Decades on a log axis each get their own decimals ("0.01", "100"), not a shared count.
            let label = tickLabel(tick, ticks: xScale == .logarithmic ? [tick] : frame.xTicks)
            out += text(label, x: x, y: bottom + 16, size: 11, anchor: "middle")
        }
        out += "<rect x=\"\(format(left))\" y=\"\(format(top))\" width=\"\(format(right - left))\" "
            + "height=\"\(format(bottom - top))\" fill=\"none\" stroke=\"#444\"/>\n"
        out += text(xLabel, x: (left + right) / 2, y: bottom + 34, size: 12, anchor: "middle")
        out += "<text x=\"0\" y=\"0\" font-size=\"12\" text-anchor=\"middle\" "
            + "transform=\"translate(16 \(format((top + bottom) / 2))) rotate(-90)\">\(escapeXML(yLabel))</text>\n"
        // Lines, clipped to the plot area so fixed y ranges cannot spill.
        let clip = "\(idPrefix)-area"
        out += "<clipPath id=\"\(clip)\"><rect x=\"\(format(left))\" y=\"\(format(top))\" "
            + "width=\"\(format(right - left))\" height=\"\(format(bottom - top))\"/></clipPath>\n"
        out += "<g clip-path=\"url(#\(clip))\">\n"
        for (index, series) in series.enumerated() {
            let dash = series.dashed ? " stroke-dasharray=\"6 4\"" : ""
            for run in finiteRuns(series.points) {
                let points = run.map { "\(format(frame.pixelX($0.x))),\(format(frame.pixelY($0.y)))" }
                if run.count == 1 {
                    out += "<circle data-series=\"\(escapeXML(series.name))\" cx=\"\(format(frame.pixelX(run[0].x)))\" "
                        + "cy=\"\(format(frame.pixelY(run[0].y)))\" r=\"2.5\" fill=\"\(color(ofSeries: index))\"/>\n"
                } else {
                    out += "<polyline data-series=\"\(escapeXML(series.name))\" fill=\"none\" "
                        + "stroke=\"\(color(ofSeries: index))\" stroke-width=\"1.8\"\(dash) "
                        + "points=\"\(points.joined(separator: " "))\"/>\n"
                    if series.markers {
                        for point in run {
                            out += "<circle cx=\"\(format(frame.pixelX(point.x)))\" cy=\"\(format(frame.pixelY(point.y)))\" "
                                + "r=\"3\" fill=\"\(color(ofSeries: index))\"/>\n"
                        }
                    }
                }
            }
        }
        out += "</g>\n"
        // Legend under the x label.
        for (row, entries) in legendRows(areaWidth: right - left).enumerated() {
            var x = left
            let y = bottom + 52 + 18 * Double(row)
            for index in entries {
                let dash = series[index].dashed ? " stroke-dasharray=\"6 4\"" : ""
                out += "<line x1=\"\(format(x))\" y1=\"\(format(y - 4))\" x2=\"\(format(x + 26))\" y2=\"\(format(y - 4))\" "
                    + "stroke=\"\(color(ofSeries: index))\" stroke-width=\"2.2\"\(dash)/>\n"
                out += text(series[index].name, x: x + 32, y: y, size: 11, anchor: "start")
                x += legendEntryWidth(index)
            }
        }
        return out
    }

    /// Consecutive runs of finite (and, on a log axis, positive-x) points.
    func finiteRuns(_ points: [PlotPoint]) -> [[PlotPoint]] {
        var runs: [[PlotPoint]] = [[]]
        for point in points {
            if point.x.isFinite, point.y.isFinite, xScale == .linear || point.x > 0 {
                runs[runs.count - 1].append(point)
            } else if !runs[runs.count - 1].isEmpty {
                runs.append([])
            }
        }
        return runs.filter { !$0.isEmpty }
    }

    // MARK: CSV

    /// The plotted numbers, one row per point: `plot,series,x,y` (non-finite values as `nan`/`inf`).
    public func csvRows() -> [String] {
        series.flatMap { series in
            series.points.map { "\(csvField(title)),\(csvField(series.name)),\(csvNumber($0.x)),\(csvNumber($0.y))" }
        }
    }

    /// `csvRows()` under a header.
    public func csv() -> String { (["plot,series,x,y"] + csvRows()).joined(separator: "\n") + "\n" }
}

/// One (x, y) data point.
public struct PlotPoint: Sendable, Equatable, Codable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }
}

/// Several plots side by side in one SVG (the paper's Figure 1 has three panels).
public struct PlotRow: Sendable {
    public var plots: [LinePlot]
    public init(_ plots: [LinePlot]) { self.plots = plots }

    public var width: Double { plots.reduce(0) { $0 + $1.width } }
    public var height: Double { plots.map(\.height).max() ?? 0 }

    /// A standalone SVG document; `idPrefix` keeps ids unique when several SVGs are inlined in one page.
    public func svg(idPrefix: String = "panel") -> String {
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(format(width))\" height=\"\(format(height))\" "
            + "viewBox=\"0 0 \(format(width)) \(format(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(format(width))\" height=\"\(format(height))\" fill=\"white\"/>\n"
        var x = 0.0
        for (index, plot) in plots.enumerated() {
            out += "<g transform=\"translate(\(format(x)) 0)\">\n" + plot.svgBody(idPrefix: "\(idPrefix)\(index)") + "</g>\n"
            x += plot.width
        }
        return out + "</svg>\n"
    }

    /// Every panel's rows under one header.
    public func csv() -> String { (["plot,series,x,y"] + plots.flatMap { $0.csvRows() }).joined(separator: "\n") + "\n" }
}

// MARK: Ticks

/// "Nice" tick values (1, 2 or 5 × 10ᵏ apart) covering lower…upper, about `count` of them.
/// `minimumStep` keeps ticks apart by at least that much (1 for whole numbers).
public func niceTicks(lower: Double, upper: Double, count: Int = 5, minimumStep: Double = 0) -> [Double] {
    guard upper > lower else { return [lower] }
    let step = max(niceStep((upper - lower) / Double(max(count, 1))), minimumStep)
    let first = (lower / step).rounded(.up), last = (upper / step).rounded(.down)
    guard first <= last else { return [lower] }
    return stride(from: first, through: last, by: 1).map { ($0 * step * 1e12).rounded() / 1e12 }
}

/// The smallest of 1, 2, 5 × 10ᵏ that is ≥ `raw`.
func niceStep(_ raw: Double) -> Double {
    let magnitude = pow10(Int(log10(raw).rounded(.down)))
    for multiple in [1.0, 2, 5, 10] where multiple * magnitude >= raw * (1 - 1e-9) { return multiple * magnitude }
    return 10 * magnitude
}

/// A domain that contains the data (widened to whole ticks when `padToTicks`) and its ticks.
func niceAxis(lower: Double, upper: Double, padToTicks: Bool, minimumStep: Double = 0) -> (ClosedRange<Double>, [Double]) {
    var (lower, upper) = (lower, upper)
    if upper - lower < 1e-12 * max(1, abs(upper)) {
        let pad = max(abs(upper) * 0.05, 1e-6)
        (lower, upper) = (lower - pad, upper + pad)
    }
    if padToTicks {
        let step = niceStep((upper - lower) / 5)
        (lower, upper) = ((lower / step).rounded(.down) * step, (upper / step).rounded(.up) * step)
    }
    return (lower...upper, niceTicks(lower: lower, upper: upper, minimumStep: minimumStep))
}

/// Whole decades around the data, with a tick at each power of ten.
func logarithmicAxis(lower: Double, upper: Double) -> (ClosedRange<Double>, [Double]) {
    // The tolerance keeps 0.01, whose log10 may come out as −2.0000000000000004, in its own decade.
    let low = Int((log10(lower) + 1e-9).rounded(.down)), high = max(Int((log10(upper) - 1e-9).rounded(.up)), low + 1)
    return (pow10(low)...pow10(high), (low...high).map(pow10))
}

func pow10(_ exponent: Int) -> Double {
    var value = 1.0
    for _ in 0..<abs(exponent) { value *= 10 }
    return exponent < 0 ? 1 / value : value
}

/// A tick label with as many decimals as the tick spacing needs ("0.25", "10k", "0.001").
func tickLabel(_ value: Double, ticks: [Double]) -> String {
    if value != 0, abs(value) >= 10_000, value.truncatingRemainder(dividingBy: 1000) == 0 {
        return "\(Int(value / 1000))k"
    }
    if value != 0, abs(value) < 1e-4 { return scientific(value) }
    var decimals = 0
    while decimals < 6, ticks.contains(where: { abs($0 * pow10(decimals) - ($0 * pow10(decimals)).rounded()) > 1e-6 }) {
        decimals += 1
    }
    return formatFixed(value, decimals)
}

func scientific(_ value: Double) -> String {
    let exponent = Int(log10(abs(value)).rounded(.down))
    let mantissa = value / pow10(exponent)
    return (abs(mantissa - 1) < 1e-9 ? "" : formatFixed(mantissa, 1) + "×") + "1e\(exponent)"
}

// MARK: Text helpers

/// `value` with `decimals` digits after the point, no exponent.
func formatFixed(_ value: Double, _ decimals: Int) -> String {
    let scale = pow10(decimals)
    let rounded = (abs(value) * scale).rounded()
    let integer = (rounded / scale).rounded(.down)
    let fraction = Int(rounded - integer * scale)
    var text = (value < 0 && rounded != 0 ? "-" : "") + String(Int(integer))
    if decimals > 0 {
        let digits = String(fraction)
        text += "." + String(repeating: "0", count: decimals - digits.count) + digits
    }
    return text
}

/// Pixel coordinates with two decimals: small files, no visible rounding.
func format(_ value: Double) -> String {
    let text = formatFixed(value, 2)
    guard text.contains(".") else { return text }
    var trimmed = Substring(text)
    while trimmed.hasSuffix("0") { trimmed = trimmed.dropLast() }
    if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
    return String(trimmed)
}

func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String) -> String {
    "<line x1=\"\(format(x1))\" y1=\"\(format(y1))\" x2=\"\(format(x2))\" y2=\"\(format(y2))\" stroke=\"\(stroke)\"/>\n"
}

func text(_ content: String, x: Double, y: Double, size: Int, anchor: String, weight: String = "normal") -> String {
    "<text x=\"\(format(x))\" y=\"\(format(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\""
        + (weight == "normal" ? "" : " font-weight=\"\(weight)\"") + ">\(escapeXML(content))</text>\n"
}

/// Escapes the five XML special characters.
public func escapeXML(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(character)
        }
    }
    return out
}

func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingAll("\"", with: "\"\"") + "\"" : text
}

/// Shortest round-tripping decimal for finite values; `nan`, `inf`, `-inf` otherwise.
func csvNumber(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value > 0 ? "inf" : "-inf" }
    return "\(value)"
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
