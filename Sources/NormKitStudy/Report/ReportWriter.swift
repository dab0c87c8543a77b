import Foundation

/// Writes a `StudyReport` as a folder a browser or GitHub shows:
///
/// - `index.html`: self-contained page, the SVGs inline;
/// - `README.md`: the same in Markdown, linking the SVGs;
/// - `<section>.svg` and `<section>.csv`: each figure and exactly the numbers it plots;
/// - `results.json`: every raw number, the configuration and the verdicts.
public enum ReportWriter {
    /// Files written into `directory` (created if missing); returns their names.
    @discardableResult
    public static func write(_ report: StudyReport, to directory: String) throws -> [String] {
        let folder = URL(fileURLWithPath: directory, isDirectory: true)
        try createFolder(directory)
        var files: [String: String] = [:]
        for section in report.sections {
            guard let figure = section.figure else { continue }
            files["\(section.id).svg"] = figure.svg(idPrefix: section.id)
            files["\(section.id).csv"] = figure.csv()
        }
        files["README.md"] = markdown(report)
        files["index.html"] = html(report)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        files["results.json"] = String(decoding: try encoder.encode(report.results), as: UTF8.self) + "\n"
        for (name, contents) in files {
            let url = folder.appendingPathComponent(name)
            do {
                try Data(contents.utf8).write(to: url)
            } catch {
                throw ReportError.cannotWrite(path: url.path, reason: error.localizedDescription)
            }
        }
        return files.keys.sorted()
    }

    /// The report in Markdown: setup list, then per section its text, figure link, table and verdict.
    public static func markdown(_ report: StudyReport) -> String {
        var lines = ["# \(report.title)", ""]
        lines += report.setup.map { "- \($0)" } + [""]
        lines += ["## Verdicts", ""] + report.sections.map { section in
            "- **\(section.title)**: " + section.verdicts.map { ($0.label.isEmpty ? "" : "\($0.label) ") + $0.verdict.text }
                .joined(separator: " ")
        } + [""]
        for section in report.sections {
            lines += ["## \(section.title)", ""]
            for paragraph in section.paragraphs { lines += [paragraph, ""] }
            if section.figure != nil {
                lines += ["![\(section.title)](\(section.id).svg)", "", "Data: [\(section.id).csv](\(section.id).csv)", ""]
            }
            if let table = section.table {
                lines.append("| " + table.header.joined(separator: " | ") + " |")
                lines.append("|" + String(repeating: "---|", count: table.header.count))
                lines += table.rows.map { "| " + $0.joined(separator: " | ") + " |" }
                lines.append("")
            }
            for verdict in section.verdicts { lines += ["**\(verdict.heading):** \(verdict.verdict.text)", ""] }
        }
        lines += ["Raw numbers: [results.json](results.json).", ""]
        return lines.joined(separator: "\n")
    }

    /// The report as one HTML page with the SVGs inline.
    public static func html(_ report: StudyReport) -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"/><title>\(escapeXML(report.title))</title>
            <style>body{font-family:Helvetica,Arial,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
            table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            .verdict{background:#f3f6fa;border-left:4px solid #1f77b4;padding:.5em 1em}
            .unsupported{border-left-color:#d62728}svg{max-width:100%;height:auto}</style></head><body>
            <h1>\(escapeXML(report.title))</h1>

            """
        out += "<ul>" + report.setup.map { "<li>\(escapeXML($0))</li>" }.joined() + "</ul>\n"
        for section in report.sections {
            out += "<h2 id=\"\(section.id)\">\(escapeXML(section.title))</h2>\n"
            out += section.paragraphs.map { "<p>\(escapeXML($0))</p>\n" }.joined()
            if let figure = section.figure {
                out += "<figure>" + figure.svg(idPrefix: section.id)
                    + "<figcaption><a href=\"\(section.id).csv\">\(section.id).csv</a></figcaption></figure>\n"
            }
            if let table = section.table {
                out += "<table><tr>" + table.header.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr>\n"
                out += table.rows.map { "<tr>" + $0.map { "<td>\(escapeXML($0))</td>" }.joined() + "</tr>\n" }.joined()
                out += "</table>\n"
            }
            for verdict in section.verdicts {
                out += "<p class=\"verdict\(verdict.verdict.supported ? "" : " unsupported")\"><b>\(verdict.heading):</b> "
                    + "\(escapeXML(verdict.verdict.text))</p>\n"
            }
        }
        return out + "<p>Raw numbers: <a href=\"results.json\">results.json</a>.</p>\n</body></html>\n"
    }
}

extension ReportWriter {
    /// Creates the report folder (and its parents) if it does not exist. `normkit study`
    /// calls it before the experiments, which take minutes, so that a folder that cannot be
    /// made stops it at once. - Throws: `ReportError.cannotWrite` naming the folder.
    public static func createFolder(_ directory: String) throws(ReportError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .cannotWrite(path: directory, reason: "cannot create the report folder: \(error.localizedDescription)")
        }
    }
}

public enum ReportError: Error, Sendable, CustomStringConvertible {
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotWrite(path, reason): "cannot write \(path): \(reason)"
        }
    }
}
