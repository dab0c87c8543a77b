import NormKitCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic seconds, for ETA and per-epoch timing.
public func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// Shows training progress: a redrawn bar with ETA, loss and accuracy when
/// standard output is a terminal; one plain line per epoch otherwise (logs, CI).
public struct ProgressReporter {
    public enum Style: Sendable { case automatic, bar, lines, silent }
    let useBar: Bool
    let silent: Bool
    private var lastDraw = 0.0

    public init(style: Style = .automatic) {
        silent = style == .silent
        switch style {
        case .automatic: useBar = isatty(1) != 0
        case .bar: useBar = true
        case .lines, .silent: useBar = false
        }
    }

    /// Called after each step; redraws at most 10 times a second. `phase` names what
    /// `epoch` counts ("Section" for `normkit study`).
    public mutating func stepFinished(epoch: Int, epochs: Int, step: Int, steps: Int, started: Double,
                                      loss: Double, accuracy: Double?, phase: String = "Epoch") {
        guard useBar, !silent else { return }
        let now = monotonicSeconds()
        guard step == steps || now - lastDraw >= 0.1 else { return }
        lastDraw = now
        let elapsed = now - started
        let eta = step > 0 ? elapsed / Double(step) * Double(steps - step) : 0
        let width = 24
        let filled = steps > 0 ? width * step / steps : width
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        var line = "\r\(phase) \(epoch)/\(epochs) \(bar) \(step)/\(steps) ETA \(formatSeconds(eta)) loss \(fixed(loss, 4))"
        if let accuracy { line += " accuracy \(fixed(accuracy, 4))" }
        writeStandardOutput(line)
    }

    /// Called once per epoch with its summary.
    public mutating func epochFinished(_ line: String) {
        guard !silent else { return }
        if useBar { writeStandardOutput("\r\u{1B}[2K") }
        writeStandardOutput(line + "\n")
    }
}

func writeStandardOutput(_ text: String) {
    fflush(nil)  // keep order with anything `print` has buffered
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

/// `value` with `digits` decimals (no Foundation needed).
public func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (abs(value) * scale).rounded()
    let integer = Int(rounded / scale)
    var fraction = String(Int(rounded.truncatingRemainder(dividingBy: scale)))
    fraction = String(repeating: "0", count: max(0, digits - fraction.count)) + fraction
    return (value < 0 && rounded != 0 ? "-" : "") + "\(integer)" + (digits > 0 ? "." + fraction : "")
}

func formatSeconds(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    return total >= 60 ? "\(total / 60)m\(total % 60)s" : "\(total)s"
}
