// Helpers for the NormKitIO tests: fixtures, scratch directories, and bitwise comparisons.

import Foundation
import NormKitCore
import NormKitNN
import Testing

/// The path of a committed fixture (written by Fixtures/make_pytorch_fixtures.py).
func fixturePath(_ name: String) throws -> String {
    try #require(Bundle.module.url(forResource: name, withExtension: "safetensors"), "fixture \(name) not bundled").path
}

/// A fresh empty directory under the temporary directory, removed when `body` returns.
func withScratchDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("normkit-io-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Every value's bits, so `==` means bit-for-bit (NaN included, −0 ≠ +0).
func bits(_ state: StateDict) -> [String: [UInt64]] {
    state.mapValues { value in
        switch value {
        case .float(let tensor): tensor.scalars.map { UInt64($0.bitPattern) }
        case .integer(let values, _): values.map { UInt64(bitPattern: $0) }
        }
    }
}

/// The largest |a − b| over two equally long lists (∞ if the lengths differ).
func maximumDifference(_ a: [Float], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .infinity }
    return zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
}

/// A tiny labelled data set: `count` examples of 4 features in two Gaussian-ish blobs, from `seed`.
func blobs(count: Int, seed: UInt64) -> TensorDataset {
    var generator = SeededGenerator(seed: seed)
    var features: [Float] = [], labels: [Int] = []
    for index in 0..<count {
        let label = index % 2
        labels.append(label)
        for _ in 0..<4 { features.append(generator.nextStandardNormal() + (label == 0 ? -1.5 : 1.5)) }
    }
    return TensorDataset(features: Tensor(features, shape: [count, 4]), labels: labels)
}

/// fc1 → bn → ReLU → fc2 with explicit seeds (nothing drawn from GlobalRandom).
final class TinyNet: Module {
    let fc1: Linear
    let bn = BatchNorm1d(6)
    let fc2: Linear
    init(seed: UInt64) {
        fc1 = Linear(4, 6, generator: SeededGenerator(seed: seed))
        fc2 = Linear(6, 2, generator: SeededGenerator(seed: seed &+ 1))
        super.init()
    }
    override func forward(_ x: Tensor) throws -> Tensor { try fc2(relu(bn(fc1(x)))) }
}
