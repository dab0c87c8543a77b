// Shared machinery for the ONNX export tests: small models with non-trivial
// batch-norm state, and a bridge to ONNX Runtime through a committed Python script.

import Foundation
import NormKitCore
import NormKitData
import NormKitNN
@testable import NormKitONNX
import Testing

// MARK: - Models

/// Runs `model` in training mode on `batches` inputs so that every batch-norm
/// layer's running mean and variance move away from their initial 0 and 1.
func warmUpRunningStatistics(_ model: Module, batches: [Tensor]) throws {
    try model.withMode(.training) {
        try Autodiff.withoutRecording {
            for batch in batches { _ = try model(batch) }
        }
    }
}

/// Gives every normalization layer of `model` γ and β away from 1 and 0 (same shapes).
func setNonTrivialAffine(_ model: Module) {
    for (_, layer) in model.namedModules()
    where layer is BatchNorm || layer is LayerNorm || layer is GroupNorm || layer is InstanceNorm {
        for (name, parameter) in layer.ownParameters() {
            let count = parameter.value.scalarCount
            let values: [Float] = name == "weight" ? (0..<count).map { 0.5 + Float($0 % 5) * 0.3 }
                                                   : (0..<count).map { Float($0 % 3) * 0.4 - 0.4 }
            parameter.value = Tensor(values, shape: parameter.shape)
        }
    }
}

/// The first `count` images of the embedded Fashion-MNIST slice's training (or
/// test) set as (count, 784) floats in [0, 1].
func fashionImages(_ count: Int, offset: Int = 0, test: Bool = false) throws -> Tensor {
    let dataset = try MNISTDataset.embeddedFashionMNIST()
    let images = test ? dataset.test : dataset.train
    let features = images.featureCount
    let pixels = images.pixels[(offset * features)..<((offset + count) * features)]
    return Tensor(pixels.map { Float($0) / 255 }, shape: [count, features])
}

/// Deterministic values uniform in −2…2 (no draw from `GlobalRandom`).
func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    return .randomUniform(shape, lower: -2, upper: 2, using: &generator)
}

// MARK: - Inspecting an exported graph

extension Onnx_GraphProto {
    var opTypes: [String] { node.map(\.opType) }
    var initializerNames: [String] { initializer.map(\.name) }

    func initializer(named name: String) -> Onnx_TensorProto? { initializer.first { $0.name == name } }

    func nodes(_ opType: String) -> [Onnx_NodeProto] { node.filter { $0.opType == opType } }
}

extension Onnx_NodeProto {
    func attribute(_ name: String) -> Onnx_AttributeProto? { attribute.first { $0.name == name } }
}

extension Onnx_TensorProto {
    /// The float32 values stored little-endian in raw_data.
    var floatValues: [Float] {
        stride(from: 0, to: rawData.count, by: 4).map { offset in
            let bytes = rawData[rawData.startIndex + offset..<rawData.startIndex + offset + 4]
            let bits = bytes.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            return Float(bitPattern: bits)
        }
    }
}

extension Onnx_TensorProto {
    /// The int64 values stored little-endian in raw_data.
    var int64Values: [Int] {
        stride(from: 0, to: rawData.count, by: 8).map { offset in
            let bytes = rawData[rawData.startIndex + offset..<rawData.startIndex + offset + 8]
            return Int(Int64(bitPattern: bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }))
        }
    }
}

extension Onnx_ValueInfoProto {
    /// The declared dimensions: a String for a symbolic one, an Int for a fixed one.
    var dimensions: [String] {
        type.tensorType.shape.dim.map { dimension in
            switch dimension.value {
            case .dimParam(let name): name
            case .dimValue(let size): String(size)
            case nil: "?"
            }
        }
    }
}

// MARK: - ONNX Runtime

/// One model to run and the input to feed it.
struct ONNXRuntimeCase {
    let model: URL
    let input: Tensor
}

/// Runs every case through `Support/run_onnxruntime.py` in one Python process
/// (ONNX checker, then ONNX Runtime's CPU provider) and returns their outputs.
/// Fails with the script's standard error when Python or its packages are missing.
func runONNXRuntime(_ cases: [ONNXRuntimeCase], in directory: URL) throws -> [Tensor] {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("run_onnxruntime.py")
    var arguments = ["python3", script.path]
    var outputs: [URL] = []
    for (index, runCase) in cases.enumerated() {
        let input = directory.appendingPathComponent("input\(index).bin")
        let output = directory.appendingPathComponent("output\(index).bin")
        try tensorFileData(runCase.input).write(to: input)
        arguments += [runCase.model.path, input.path, output.path]
        outputs.append(output)
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let standardError = Pipe()
    process.standardError = standardError
    try process.run()
    let errorText = String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ONNXRuntimeFailure(message: "run_onnxruntime.py exited with \(process.terminationStatus) "
                                     + "(needs: python3 -m pip install onnxruntime onnx numpy):\n\(errorText)")
    }
    return try outputs.map { try tensor(fromTensorFile: Data(contentsOf: $0)) }
}

struct ONNXRuntimeFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The script's tensor file: rank (u32), dimensions (i64 each), float32 values; little-endian.
func tensorFileData(_ tensor: Tensor) -> Data {
    var data = Data()
    withUnsafeBytes(of: UInt32(tensor.rank).littleEndian) { data.append(contentsOf: $0) }
    for size in tensor.shape { withUnsafeBytes(of: Int64(size).littleEndian) { data.append(contentsOf: $0) } }
    for scalar in tensor.scalars { withUnsafeBytes(of: scalar.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    return data
}

func tensor(fromTensorFile data: Data) throws -> Tensor {
    let bytes = [UInt8](data)
    func integer(at offset: Int, size: Int) -> UInt64 {
        (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }
    guard bytes.count >= 4 else { throw ONNXRuntimeFailure(message: "tensor file of \(bytes.count) bytes") }
    let rank = Int(integer(at: 0, size: 4))
    let shape = (0..<rank).map { Int(integer(at: 4 + 8 * $0, size: 8)) }
    let start = 4 + 8 * rank, count = shape.reduce(1, *)
    guard bytes.count == start + 4 * count else {
        throw ONNXRuntimeFailure(message: "tensor file of shape \(shape): expected \(start + 4 * count) bytes, found \(bytes.count)")
    }
    let values = (0..<count).map { Float(bitPattern: UInt32(integer(at: start + 4 * $0, size: 4))) }
    return Tensor(values, shape: shape)
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("normkit-onnx-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
