// Safetensors: exact round trips, the format's layout, and files written by
// PyTorch through the `safetensors` package (Fixtures/make_pytorch_fixtures.py).

import Foundation
import NormKitCore
@testable import NormKitIO
import NormKitNN
import Testing

@Suite("Safetensors")
struct SafetensorsTests {
    @Test("NormKit → safetensors → NormKit is exact for a trained model's parameters and buffers")
    func modelRoundTripIsExact() throws {
        try withScratchDirectory { directory in
            let model = TinyNet(seed: 3)
            model.compile(optimizer: Adam(learningRate: 0.05), loss: CrossEntropyLoss())
            try model.fit(blobs(count: 32, seed: 1), epochs: 1, batchSize: 8, generator: SeededGenerator(seed: 2),
                          progress: .silent)
            try model.save(to: "\(directory)/model.safetensors")
            let copy = TinyNet(seed: 99)
            try copy.load(from: "\(directory)/model.safetensors")
            #expect(bits(copy.stateDict()) == bits(model.stateDict()))
            #expect(copy.bn.numBatchesTracked == 4)
        }
    }

    @Test("every float type round-trips its own values exactly, including ±0, ±∞, subnormals and the largest finite",
          arguments: [SafetensorsDType.f32, .f64, .f16, .bf16])
    func floatTypesRoundTrip(dtype: SafetensorsDType) throws {
        // Values each type represents exactly, so that writing then reading must give them back unchanged.
        let values: [Float] = [0, -0.0, 1, -2.5, .infinity, -.infinity, 0.15625, 3, 96, -0.5]
            + (dtype == .f16 ? [Float(Float16.leastNonzeroMagnitude), 65504] : [Float(bitPattern: 0x0001_0000), Float(bitPattern: 0x7F7F_0000)])
        let file = SafetensorsFile(tensors: ["x": SafetensorsTensor(Tensor(values, shape: [2, values.count / 2]), as: dtype)])
        let decoded = try SafetensorsFile.decode(file.encoded(), path: "memory")
        let tensor = try decoded.tensor("x", path: "memory")
        #expect(tensor.dtype == dtype && tensor.shape == [2, values.count / 2])
        #expect(tensor.floats.map(\.bitPattern) == values.map(\.bitPattern))
    }

    @Test("I64 keeps every bit of int64 values and scalars have shape []")
    func integersRoundTrip() throws {
        let values: [Int64] = [0, -1, .max, .min, 1 << 40]
        let file = SafetensorsFile(tensors: ["n": SafetensorsTensor(int64: values, shape: [5]),
                                             "s": SafetensorsTensor(int64: [3], shape: [])])
        let decoded = try SafetensorsFile.decode(file.encoded(), path: "memory")
        #expect(decoded.tensors["n"]?.integers == values)
        #expect(decoded.tensors["s"]?.shape == [] && decoded.tensors["s"]?.integers == [3])
    }

    @Test("the encoding follows the format: little-endian length, space-padded header to 8 bytes, contiguous data")
    func layout() throws {
        let file = SafetensorsFile(tensors: ["b": SafetensorsTensor(Tensor([1, 2]), as: .f32),
                                             "a": SafetensorsTensor(int64: [7], shape: [])], metadata: ["format": "pt"])
        let bytes = file.encoded()
        let headerLength = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect(headerLength % 8 == 0)
        #expect(8 + headerLength + 8 + 8 == bytes.count)
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        #expect((header["__metadata__"] as? [String: String]) == ["format": "pt"])
        #expect((header["a"] as? [String: Any])?["data_offsets"] as? [Int] == [0, 8])
        #expect((header["b"] as? [String: Any])?["data_offsets"] as? [Int] == [8, 16])
        #expect(Array(bytes[(8 + headerLength)...].prefix(8)) == [7, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("torch's F64, F16 and BF16 files read back to the Float32 values torch converts them to")
    func readsTorchConversions() throws {
        let path = try fixturePath("dtypes")
        let file = try SafetensorsFile.read(path: path)
        let source = try file.tensor("source", path: path)
        #expect(source.dtype == .f32 && source.shape == [8, 8])
        // Widening F16/BF16 to F32 is exact, and F64 here holds F32 values exactly, so each must match torch's own rounding of `source`.
        let f64 = try file.tensor("as_f64", path: path), f16 = try file.tensor("as_f16", path: path)
        let bf16 = try file.tensor("as_bf16", path: path)
        #expect(f64.floats.map(\.bitPattern) == source.floats.map(\.bitPattern))
        #expect(f16.floats.map(\.bitPattern) == source.floats.map { Float(Float16($0)).bitPattern })
        #expect(bf16.dtype == .bf16 && bf16.shape == [8, 8])
        #expect(file.tensors["integers_i64"]?.integers == [0, 1, -1, 1 << 40, -(1 << 62), 123_456_789, 7, 1 << 24])
        #expect(file.tensors["integers_i32"]?.integers == [Int64(Int32.min), Int64(Int32.max), 0, -5])
        #expect(file.tensors["integers_u8"]?.integers == [0, 1, 127, 128, 255])
        #expect(file.tensors["integers_u8"]?.floats == [0, 1, 127, 128, 255])
    }

    @Test("NormKit writes F64, F16 and BF16 with the same bytes torch writes (round to nearest even, overflow to ∞)",
          arguments: [("as_f64", SafetensorsDType.f64), ("as_f16", .f16), ("as_bf16", .bf16)])
    func writesTorchConversions(name: String, dtype: SafetensorsDType) throws {
        let path = try fixturePath("dtypes")
        let file = try SafetensorsFile.read(path: path)
        let source = try file.tensor("source", path: path)
        let ours = SafetensorsTensor(Tensor(source.floats, shape: source.shape), as: dtype)
        #expect(ours.bytes == (try file.tensor(name, path: path)).bytes)
    }

    @Test("a PyTorch state_dict saved by safetensors loads into SeedMLP and gives PyTorch's probabilities within 1e-5")
    func loadsPyTorchSeedModel() throws {
        let path = try fixturePath("seed_mlp_pytorch")
        let state = try SafetensorsFile.read(path: path).stateDict
        #expect(state.keys.sorted() == ["bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var",
                                        "bn.weight", "fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"])
        let model = SeedMLP(inputFeatures: 784, hiddenFeatures: 64, classes: 10)
        try model.load(from: path)
        #expect(model.bn?.numBatchesTracked == 3)

        let expectedPath = try fixturePath("seed_mlp_expected")
        let expected = try SafetensorsFile.read(path: expectedPath)
        let inputs = try expected.tensor("inputs", path: expectedPath)
        let probabilities = try expected.tensor("probabilities", path: expectedPath)
        #expect(probabilities.dtype == .f64)
        let reference = probabilities.bytes.withUnsafeBytes { raw in (0..<80).map { Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)) } }
        let output = try model.predict(Tensor(inputs.floats, shape: inputs.shape))
        #expect(output.shape == [8, 10])
        #expect(maximumDifference(output.scalars, reference) <= 1e-5)
        // And it is really the trained model: the running statistics are not the initial 0 and 1.
        #expect(model.bn!.runningMean!.scalars.contains { $0 != 0 })
    }

    @Test("a NormKit file of the seed model carries PyTorch's names, dtypes and metadata")
    func writesPyTorchLayout() throws {
        try withScratchDirectory { directory in
            let model = SeedMLP(inputFeatures: 784, hiddenFeatures: 64, classes: 10)
            try model.load(from: fixturePath("seed_mlp_pytorch"))
            try model.save(to: "\(directory)/seed.safetensors")
            let ours = try SafetensorsFile.read(path: "\(directory)/seed.safetensors")
            let theirs = try SafetensorsFile.read(path: fixturePath("seed_mlp_pytorch"))
            #expect(ours.metadata == ["format": "pt"])
            #expect(ours.tensors == theirs.tensors, "every name, dtype, shape and byte as PyTorch wrote them")
        }
    }
}
