// swift-tools-version: 6.1
import PackageDescription

// NormKit's benchmarks: a package of their own, so that the root package's
// `swift test` never builds ordo-one/benchmark. Run from this folder:
//   swift package --disable-sandbox benchmark
// (see README.md).
let package = Package(
    name: "NormKitBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "NormKit", path: ".."),
        // MallocInterposer: counts mallocs per iteration (the "no allocation in a
        // steady-state step" goal is read from it).
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "NormKitBenchmarks",
            dependencies: [
                .product(name: "NormKit", package: "NormKit"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/NormKitBenchmarks",
            swiftSettings: [.unsafeFlags(["-target-cpu", "native"])],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
