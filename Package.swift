// swift-tools-version: 6.1
import PackageDescription

/// Compute-bound kernels (matrix multiply, convolution) are 4–7× faster with the
/// build machine's full vector width than with the default x86-64 (SSE2) target;
/// see ../shared/PERF-NOTES.md. The `NativeCPU` trait, on by default, compiles
/// for the machine that builds; `swift build --disable-default-traits` produces a
/// portable binary instead.
let nativeCPU: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "native"], .when(platforms: [.linux], traits: ["NativeCPU"]))
]

let package = Package(
    name: "NormKit",
    products: [
        .library(name: "NormKit", targets: ["NormKit"]),
        // Separate from the umbrella so that only users who export pay for the protobuf runtime.
        .library(name: "NormKitONNX", targets: ["NormKitONNX"]),
        .executable(name: "normkit", targets: ["normkit"]),
    ],
    traits: [
        .trait(name: "NativeCPU", description: "Compile kernels for the build machine's CPU (AVX2/AVX-512 where present)."),
        .default(enabledTraits: ["NativeCPU"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The standard Swift protobuf runtime: an ONNX model file is a protobuf message.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // zlib ships with every Linux distribution; it is the reference inflater for gzip.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),

        // Tensor, reverse-mode autodiff and the forward/backward kernel pairs.
        .target(name: "NormKitCore", swiftSettings: nativeCPU),
        // Layers, losses, optimizers and the training loop.
        .target(name: "NormKitNN", dependencies: ["NormKitCore"], swiftSettings: nativeCPU),
        // IDX (MNIST-format) files, plain or gzip, and the embedded Fashion-MNIST slice.
        .target(
            name: "NormKitData",
            dependencies: ["CZlib"],
            resources: [.copy("Resources/fashion-mnist-slice")],
            swiftSettings: nativeCPU
        ),
        // Model files: safetensors state dicts (PyTorch's names) and training checkpoints.
        .target(name: "NormKitIO", dependencies: ["NormKitCore", "NormKitNN"]),
        // The umbrella users import.
        .target(name: "NormKit", dependencies: ["NormKitCore", "NormKitNN", "NormKitData", "NormKitIO"]),
        // `normkit study`: paired experiments with and without BN, SVG line plots, verdicts and reports.
        .target(name: "NormKitStudy", dependencies: ["NormKit"]),
        // ONNX export. The Swift for the ONNX schema subset is generated once and committed
        // (scripts/generate_onnx_proto.sh); the .proto beside it is its source.
        .target(
            name: "NormKitONNX",
            dependencies: ["NormKitNN", "NormKitCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Schema/onnx-subset.proto"]
        ),

        .executableTarget(
            name: "normkit",
            dependencies: ["NormKit", "NormKitStudy", "NormKitONNX", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "KerasStyleExample", dependencies: ["NormKit"], path: "Examples/KerasStyle"),
        .executableTarget(name: "PyTorchStyleExample", dependencies: ["NormKit"], path: "Examples/PyTorchStyle"),

        .testTarget(name: "NormKitCoreTests", dependencies: ["NormKitCore"]),
        .testTarget(name: "NormKitNNTests", dependencies: ["NormKitNN", "NormKitCore"]),
        .testTarget(name: "NormKitDataTests", dependencies: ["NormKitData"]),
        .testTarget(name: "NormKitStudyTests", dependencies: ["NormKitStudy", "NormKit", "NormKitNN"]),
        // Checks exported graphs against ONNX Runtime through a committed Python script.
        .testTarget(
            name: "NormKitONNXTests",
            dependencies: ["NormKitONNX", "NormKitNN", "NormKitCore", "NormKitData"],
            exclude: ["Support/run_onnxruntime.py"]
        ),
        // Golden values from an independent NumPy implementation (the script sits beside its fixtures).
        .testTarget(
            name: "BatchNormGoldenTests",
            dependencies: ["NormKitNN", "NormKitCore"],
            exclude: ["Fixtures/make_batchnorm_golden.py", "Fixtures/make_norm_siblings_golden.py", "Fixtures/README.md"],
            resources: [.copy("Fixtures/batchnorm_golden.json"), .copy("Fixtures/norm_siblings_golden.json")]
        ),
        // Fixtures written by PyTorch and the `safetensors` package (the script sits beside them).
        .testTarget(
            name: "NormKitIOTests",
            dependencies: ["NormKitIO", "NormKitNN", "NormKitCore"],
            exclude: ["Fixtures/make_pytorch_fixtures.py", "Fixtures/make_cnn_training_fixture.py", "Fixtures/README.md"],
            resources: [
                .copy("Fixtures/seed_mlp_pytorch.safetensors"),
                .copy("Fixtures/seed_mlp_expected.safetensors"),
                .copy("Fixtures/dtypes.safetensors"),
                .copy("Fixtures/cnn_training_pytorch.safetensors"),
            ]
        ),
        // The umbrella's own code: seed-model files for the CLI's evaluate and predict.
        .testTarget(name: "NormKitTests", dependencies: ["NormKit"]),
        .testTarget(name: "ExamplesTests", dependencies: ["NormKit", "KerasStyleExample", "PyTorchStyleExample"]),
        // Runs the built `normkit` executable as a process (it depends on it so that it is built first).
        .testTarget(name: "CommandLineTests", dependencies: ["NormKit", "normkit"]),
    ],
    swiftLanguageModes: [.v6]
)
