import NormKitCore
import Synchronization

/// Held while a test changes `Threading.count`: tests run in parallel, and two
/// that save, change and restore the one process-wide setting at the same time
/// could restore each other's value instead of the original.
private let threadCountLock = Mutex(())

/// Runs `body`, which may set `Threading.count` freely, while no other test
/// changes it, and restores the count afterwards.
func withExclusiveThreadCount(_ body: () throws -> Void) rethrows {
    try threadCountLock.withLock { _ in
        let saved = Threading.count
        defer { Threading.count = saved }
        try body()
    }
}
