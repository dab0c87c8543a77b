/// A section's one-line conclusion, computed from its numbers.
///
/// `supported` says whether the data back the paper's claim; when they do
/// not, the text starts with "Not supported:" and says what the data show.
public struct Verdict: Sendable, Equatable, Codable {
    public var supported: Bool
    public var text: String

    static func supported(_ text: String) -> Verdict { Verdict(supported: true, text: text) }
    static func notSupported(_ text: String) -> Verdict { Verdict(supported: false, text: "Not supported: " + text) }
}

/// The margins below which a difference is called "about the same". They are
/// larger than the noise of a 2,000-image test set (±1 point for one standard error at 85 %).
public enum VerdictMargins {
    /// A speed-up smaller than this ratio is "about the same time".
    public static let speedupRatio = 1.2
    /// Drift ratios below this are "equally steady".
    public static let stabilityRatio = 1.5
    /// Accuracy differences (fractions) below this are "within noise".
    public static let accuracy = 0.01
    /// Accuracy spreads across σ must differ by this much (fraction) to count.
    public static let spread = 0.05
}

public enum Verdicts {
    /// Section 1 (a): how much sooner the test accuracy reached a common level.
    ///
    /// The level is 95 % of the best accuracy either run reached, rounded down
    /// to a multiple of 5 points, so both curves are measured against the same bar.
    /// - Parameters: `steps` the evaluation steps; `withBN`/`withoutBN` test accuracies (fractions) at those steps.
    public static func speedup(steps: [Int], withBN: [Double], withoutBN: [Double]) -> Verdict {
        precondition(steps.count == withBN.count && steps.count == withoutBN.count && !steps.isEmpty,
                     "speedup: \(steps.count) steps, \(withBN.count) and \(withoutBN.count) accuracies")
        let best = max(withBN.max()!, withoutBN.max()!)
        let level = ((best * 0.95 * 20).rounded(.down)) / 20
        let reachedBN = withBN.firstIndex { $0 >= level }.map { steps[$0] }
        let reachedNo = withoutBN.firstIndex { $0 >= level }.map { steps[$0] }
        let bar = percent(level, digits: 0) + " test accuracy"
        switch (reachedBN, reachedNo) {
        case let (bn?, no?):
            let ratio = Double(no) / Double(bn)
            if ratio >= VerdictMargins.speedupRatio {
                return .supported("with BN, \(bar) came \(fixed(ratio, 1))× sooner (step \(grouped(bn)) against \(grouped(no))).")
            } else if ratio <= 1 / VerdictMargins.speedupRatio {
                return .notSupported("without BN, \(bar) came \(fixed(1 / ratio, 1))× sooner (step \(grouped(no)) against \(grouped(bn)) with BN).")
            }
            return .notSupported("both reached \(bar) at about the same step (\(grouped(bn)) with BN, \(grouped(no)) without).")
        case let (bn?, nil):
            return .supported("with BN, \(bar) came at step \(grouped(bn)); without BN it never came in \(grouped(steps.last!)) steps (best \(percent(withoutBN.max()!))).")
        case let (nil, no?):
            return .notSupported("without BN, \(bar) came at step \(grouped(no)); with BN it never came in \(grouped(steps.last!)) steps (best \(percent(withBN.max()!))).")
        case (nil, nil):
            preconditionFailure("speedup: the best run must reach 95 % of its own best")
        }
    }

    /// How far a distribution wandered over training, in units of its own
    /// typical width: (range of the median + range of the 15–85 % width) / mean width.
    /// 0 means a perfectly steady distribution.
    public static func drift(_ percentiles: [PercentileTriple]) -> Double {
        precondition(!percentiles.isEmpty, "drift: no percentiles")
        let medians = percentiles.map(\.p50), widths = percentiles.map { $0.p85 - $0.p15 }
        let meanWidth = widths.reduce(0, +) / Double(widths.count)
        let movement = (medians.max()! - medians.min()!) + (widths.max()! - widths.min()!)
        return movement / max(meanWidth, 1e-12)
    }

    /// Section 1 (b, c): whether the sigmoid's input distribution is steadier with BN.
    public static func stability(withBN: [PercentileTriple], withoutBN: [PercentileTriple]) -> Verdict {
        let bn = drift(withBN), no = drift(withoutBN)
        let numbers = "its median and 15–85 % width moved \(fixed(bn, 2)) widths over training with BN, \(fixed(no, 2)) without"
        // `no > bn` as well: two drifts of 0 satisfy the ratio test both ways but are a tie.
        if no >= VerdictMargins.stabilityRatio * bn && no > bn {
            let ratio = bn > 0 ? "\(fixed(no / bn, 1))× steadier" : "perfectly steady"
            return .supported("with BN the input to the sigmoid was \(ratio): \(numbers).")
        } else if bn >= VerdictMargins.stabilityRatio * no && bn > no {
            return .notSupported("the input to the sigmoid was steadier without BN: \(numbers).")
        }
        return .notSupported("the input to the sigmoid was about equally steady: \(numbers).")
    }

    /// Section 2: the largest learning rate on the grid at which each variant still trains.
    public static func learningRateTolerance(grid: [Double], trainsWithBN: [Bool], trainsWithoutBN: [Bool]) -> Verdict {
        precondition(grid.count == trainsWithBN.count && grid.count == trainsWithoutBN.count && !grid.isEmpty,
                     "learningRateTolerance: grid of \(grid.count), results \(trainsWithBN.count) and \(trainsWithoutBN.count)")
        // The largest rate that trains, by value: the grid is a public setting and need not ascend.
        func largest(_ trains: [Bool]) -> Double? { grid.indices.filter { trains[$0] }.map { grid[$0] }.max() }
        let bn = largest(trainsWithBN), no = largest(trainsWithoutBN)
        func describe(_ rate: Double?) -> String {
            guard let rate else { return "at no learning rate on the grid" }
            return "up to \(number(rate))" + (rate == grid.max() ? " (the largest tried)" : "")
        }
        let numbers = "with BN it trained \(describe(bn)), without BN \(describe(no))"
        switch (bn, no) {
        case let (bn?, no?) where bn > no:
            return .supported("with BN the network tolerated a \(number(bn / no))× larger learning rate: \(numbers).")
        case (_?, nil):
            return .supported("only with BN did the network train at all on the grid: \(numbers).")
        case let (bn?, no?) where bn == no:
            return .notSupported("both variants tolerated the same largest learning rate: \(numbers).")
        default:
            return .notSupported("BN did not raise the largest usable learning rate: \(numbers).")
        }
    }

    /// Section 3: whether final accuracy depends less on the initial weight scale with BN.
    /// The spread is the best minus the worst final test accuracy across the σ grid.
    public static func initializationSensitivity(sigmas: [Double], withBN: [Double], withoutBN: [Double]) -> Verdict {
        precondition(sigmas.count == withBN.count && sigmas.count == withoutBN.count && !sigmas.isEmpty,
                     "initializationSensitivity: \(sigmas.count) σ, \(withBN.count) and \(withoutBN.count) accuracies")
        let spreadBN = withBN.max()! - withBN.min()!, spreadNo = withoutBN.max()! - withoutBN.min()!
        let range = "σ \(number(sigmas.min()!))…\(number(sigmas.max()!))"
        let numbers = "final test accuracy \(percent(withBN.min()!))–\(percent(withBN.max()!)) with BN, "
            + "\(percent(withoutBN.min()!))–\(percent(withoutBN.max()!)) without"
        if spreadNo - spreadBN >= VerdictMargins.spread {
            return .supported("with BN the result hardly depended on the initial scale across \(range): \(numbers).")
        } else if spreadBN - spreadNo >= VerdictMargins.spread {
            return .notSupported("with BN the result depended more on the initial scale across \(range): \(numbers).")
        }
        return .notSupported("both variants were about equally sensitive across \(range): \(numbers).")
    }

    /// Section 4: whether the train–test accuracy gap is smaller with BN (the regularization claim).
    public static func generalizationGap(trainWithBN: Double, testWithBN: Double,
                                         trainWithoutBN: Double, testWithoutBN: Double) -> Verdict {
        let gapBN = trainWithBN - testWithBN, gapNo = trainWithoutBN - testWithoutBN
        let numbers = "gap \(points(gapBN)) with BN (train \(percent(trainWithBN)), test \(percent(testWithBN))), "
            + "\(points(gapNo)) without (train \(percent(trainWithoutBN)), test \(percent(testWithoutBN)))"
        if gapNo - gapBN >= VerdictMargins.accuracy {
            return .supported("with BN the train–test gap was smaller: \(numbers).")
        } else if gapBN - gapNo >= VerdictMargins.accuracy {
            return .notSupported("with BN the train–test gap was larger: \(numbers).")
        }
        return .notSupported("the gaps differ by less than \(points(VerdictMargins.accuracy)): \(numbers).")
    }

    /// Section 5: whether the seed model with BN is ahead epoch by epoch.
    public static func seedModel(withBN: [Double], withoutBN: [Double]) -> Verdict {
        precondition(withBN.count == withoutBN.count && !withBN.isEmpty,
                     "seedModel: \(withBN.count) and \(withoutBN.count) epochs")
        let ahead = zip(withBN, withoutBN).filter { $0 > $1 }.count
        let numbers = "ahead in \(ahead) of \(withBN.count) epochs; final test accuracy \(percent(withBN.last!)) with BN, "
            + "\(percent(withoutBN.last!)) without"
        if ahead * 2 > withBN.count, withBN.last! > withoutBN.last! {
            return .supported("the seed model with BN was \(numbers).")
        }
        return .notSupported("the seed model with BN was \(numbers).")
    }
}

/// The 15th, 50th and 85th percentiles of one quantity at one moment.
public struct PercentileTriple: Sendable, Equatable, Codable {
    public var p15: Double, p50: Double, p85: Double
    public init(p15: Double, p50: Double, p85: Double) {
        self.p15 = p15
        self.p50 = p50
        self.p85 = p85
    }

    public init(of values: [Float]) {
        let p = percentiles(values, [15, 50, 85])
        self.init(p15: p[0], p50: p[1], p85: p[2])
    }
}

// MARK: Number formatting for verdicts and reports

/// A fraction as a percentage: 0.853 → "85.3 %".
func percent(_ fraction: Double, digits: Int = 1) -> String {
    fraction.isFinite ? formatFixed(fraction * 100, digits) + " %" : "\(fraction)"
}

/// A difference of fractions in percentage points: 0.012 → "1.2 points".
func points(_ fraction: Double) -> String { formatFixed(fraction * 100, 1) + " points" }

func fixed(_ value: Double, _ digits: Int) -> String { value.isFinite ? formatFixed(value, digits) : "\(value)" }

/// 12000 → "12,000".
func grouped(_ value: Int) -> String {
    let digits = String(abs(value))
    var out = ""
    for (offset, character) in digits.enumerated() {
        if offset > 0, (digits.count - offset) % 3 == 0 { out += "," }
        out.append(character)
    }
    return (value < 0 ? "-" : "") + out
}

/// A grid value without float noise: 0.3 → "0.3", 30 → "30", 0.001 → "0.001".
func number(_ value: Double) -> String {
    guard value.isFinite, value != 0 else { return "\(value)" }
    for decimals in 0...6 {
        let text = formatFixed(value, decimals)
        if let parsed = Double(text), abs(parsed - value) <= 1e-9 * abs(value) { return text }
    }
    return "\(value)"
}
