import Foundation
import NormKit

/// `normkit train --plot FILE`: loss and accuracy per epoch from a `fit` history,
/// training dashed and test solid, as two panels of one SVG.
public enum TrainingPlot {
    public static func plot(_ history: History) -> PlotRow {
        // A resumed run's history starts after the checkpoint's epoch: plot its own numbers.
        let epochs = history.epochs.count == history.loss.count
            ? history.epochs.map(Double.init) : history.loss.indices.map { Double($0 + 1) }
        func panel(_ title: String, train: [Double], test: [Double], yRange: ClosedRange<Double>?) -> LinePlot {
            var series = [LinePlot.Series("training", x: epochs, y: train, dashed: true, color: "#1f77b4")]
            if test.count == epochs.count { series.append(.init("test", x: epochs, y: test, color: "#d62728")) }
            return LinePlot(title: title, xLabel: "epoch", yLabel: title.lowercased(), series: series, yRange: yRange,
                            integerXTicks: true)
        }
        var panels = [panel("Loss", train: history.loss, test: history.validationLoss, yRange: nil)]
        if history.accuracy.count == epochs.count {
            panels.append(panel("Accuracy", train: history.accuracy, test: history.validationAccuracy, yRange: nil))
        }
        return PlotRow(panels)
    }

    /// Writes `plot(history)` to `path`.
    public static func write(_ history: History, to path: String) throws {
        do {
            try Data(plot(history).svg().utf8).write(to: URL(fileURLWithPath: path))
        } catch {
            throw ReportError.cannotWrite(path: path, reason: error.localizedDescription)
        }
    }
}
