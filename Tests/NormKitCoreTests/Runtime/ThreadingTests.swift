import NormKitCore
import Synchronization
import Testing

@Suite("Threading")
struct ThreadingTests {
    @Test(arguments: [0, 1, 2, 7, 64])
    func parallelForRunsEveryChunkExactlyOnce(chunks: Int) {
        let visits = Mutex([Int](repeating: 0, count: chunks))
        Threading.parallelFor(chunks: chunks) { chunk in
            visits.withLock { $0[chunk] += 1 }
        }
        #expect(visits.withLock { $0 } == [Int](repeating: 1, count: chunks))
    }

    @Test func threadCountBelowOneStops() async {
        await #expect(processExitsWith: .failure) {
            Threading.count = 0
        }
    }
}
