import Synchronization

/// A fast, seedable random number generator (xoshiro256**, seeded through
/// SplitMix64 so that nearby seeds give unrelated streams).
///
/// Every random tensor and every layer initialisation draws from one of these,
/// passed explicitly, so a run is reproducible from its seed. Its whole state is
/// four words (`state`), which checkpoints can save and restore.
public struct SeededGenerator: RandomNumberGenerator, Sendable, Equatable {
    public var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var splitMix = seed
        func next() -> UInt64 {
            splitMix &+= 0x9E37_79B9_7F4A_7C15
            var z = splitMix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
    }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, by: 7) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = rotateLeft(state.3, by: 45)
        return result
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// A standard normal sample (Box–Muller in Double, so the tails are right).
    public mutating func nextStandardNormal() -> Float {
        // 1 − u keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - Double(next() >> 11) * 0x1.0p-53
        let u2 = Double(next() >> 11) * 0x1.0p-53
        return Float((-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2))
    }

    public static func == (a: SeededGenerator, b: SeededGenerator) -> Bool {
        a.state == b.state
    }

    private func rotateLeft(_ x: UInt64, by k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

/// The process-wide generator that layers use when none is passed to them,
/// like `torch.manual_seed`. Seed it once at start-up for a reproducible run.
public enum GlobalRandom {
    private static let generator = Mutex(SeededGenerator(seed: 0))

    /// Restarts the global stream from `seed`.
    public static func seed(_ seed: UInt64) {
        generator.withLock { $0 = SeededGenerator(seed: seed) }
    }

    /// The global stream's current position. Checkpoints save it; assigning a
    /// saved value makes the stream continue exactly where it was.
    public static var current: SeededGenerator {
        get { generator.withLock { $0 } }
        set { generator.withLock { $0 = newValue } }
    }

    /// Draws a fresh seed from the global stream (layers derive their own
    /// generators from it, so their initial weights depend only on creation order).
    public static func nextSeed() -> UInt64 {
        generator.withLock { $0.next() }
    }
}
