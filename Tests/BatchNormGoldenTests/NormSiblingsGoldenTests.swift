// LayerNorm, GroupNorm and InstanceNorm against golden values from an
// independent NumPy float64 implementation
// (Fixtures/make_norm_siblings_golden.py, written from the papers and
// PyTorch's documented semantics, not from NormKit's code; while it was
// written it was also checked against PyTorch 2 in float64, agreeing to 1e-11).
//
// Each case runs its steps in order through the layer — for LayerNorm and
// GroupNorm one forward in training and one in inference mode (they must
// compute the same way), for InstanceNorm training steps then an inference
// step — and compares the output, the gradients of Σ dy·y for the input,
// weight and bias, and (instance norm with tracking) the running estimates
// after each step. Inputs in the fixture are float32 values, so NormKit sees
// exactly what the reference used.
//
// Tolerance: |actual − expected| ≤ 1e-5·max(1, |expected|), as for batch
// norm (BatchNormGoldenTests.swift explains the budget: NormKit rounds each
// element a handful of times in Float after Double statistics, ~1e-6). The
// rows at mean 1e4 and at mean 100 with std 1e-3 get the same tolerance: a
// one-pass variance or a forward folded as x·a + (β − μ·a) would miss it by
// orders of magnitude. The running estimates are means of O(1) values after at
// most three updates, so their Float storage costs ≤ 1e-7 (no extra term).

import Foundation
import NormKitCore
import NormKitNN
import Testing

// MARK: - The fixture

struct SiblingsFixture: Decodable, Sendable {
    let seed: Int
    let numpyVersion: String
    let cases: [SiblingsCase]
}

struct SiblingsCase: Decodable, Sendable {
    struct Step: Decodable, Sendable {
        let mode: String
        let x: [Double]
        let y: [Double]
        let dy: [Double]
        let dx: [Double]
        let dweight: [Double]?
        let dbias: [Double]?
        let runningMean: [Double]?
        let runningVar: [Double]?
    }

    let name: String
    let description: String
    /// layer_norm, group_norm or instance_norm.
    let kind: String
    let shape: [Int]
    let epsilon: Double
    // layer_norm
    let normalizedShape: [Int]?
    let keras: Bool?
    let elementwiseAffine: Bool?
    let biasEnabled: Bool?
    // group_norm
    let groupCount: Int?
    let channelCount: Int?
    // group_norm, instance_norm
    let affine: Bool?
    // instance_norm
    let spatialRank: Int?
    let tracksRunningStatistics: Bool?
    let momentum: Double?

    let weight: [Double]?
    let bias: [Double]?
    let steps: [Step]
}

enum SiblingsGolden {
    /// Every case the generator writes; a case that disappears from the fixture must be noticed.
    static let expectedCaseNames: Set<String> = [
        "layer_norm_last_axis", "layer_norm_two_axes", "layer_norm_sequence", "layer_norm_no_bias",
        "layer_norm_no_affine", "layer_norm_keras", "layer_norm_large_mean", "layer_norm_constant_row",
        "group_norm_ncl", "group_norm_nchw", "group_norm_nc", "group_norm_one_group", "group_norm_instance_groups",
        "group_norm_no_affine", "group_norm_batch_of_one",
        "instance_norm_1d", "instance_norm_1d_unbatched", "instance_norm_2d_affine", "instance_norm_3d",
        "instance_norm_2d_tracked", "instance_norm_1d_tracked_no_affine",
    ]

    static let loaded: Result<SiblingsFixture, any Error> = Result { try decodeFixture(named: "norm_siblings_golden") }

    static func caseNames() throws -> [String] { try loaded.get().cases.map(\.name) }

    static func goldenCase(named name: String) throws -> SiblingsCase {
        try #require(try loaded.get().cases.first { $0.name == name }, "no case named \(name) in norm_siblings_golden.json")
    }
}

/// The layer a case describes, with handles on what the test sets and reads.
private struct LayerUnderTest {
    let module: Module
    let weight: () -> Parameter?
    let bias: () -> Parameter?
    let running: () -> (mean: Tensor?, variance: Tensor?)

    init(_ golden: SiblingsCase) throws {
        let epsilon = Float(golden.epsilon)
        switch golden.kind {
        case "layer_norm":
            let normalizedShape = try #require(golden.normalizedShape)
            let layer: LayerNorm
            if golden.keras == true {
                layer = LayerNormalization()
                #expect(layer.epsilon == epsilon, "\(golden.name): Keras' default epsilon is the case's")
                #expect(layer.weight == nil, "\(golden.name): the Keras spelling builds its parameters lazily")
                _ = layer.build(inputShape: golden.shape)
                #expect(layer.normalizedShape == normalizedShape)
            } else {
                layer = LayerNorm(normalizedShape: normalizedShape, epsilon: epsilon,
                                  elementwiseAffine: try option(golden.elementwiseAffine, "elementwiseAffine", of: golden),
                                  bias: try option(golden.biasEnabled, "biasEnabled", of: golden))
            }
            module = layer
            weight = { layer.weight }
            bias = { layer.bias }
            running = { (nil, nil) }
        case "group_norm":
            let layer = GroupNorm(groupCount: try #require(golden.groupCount),
                                  channelCount: try #require(golden.channelCount), epsilon: epsilon,
                                  affine: try option(golden.affine, "affine", of: golden))
            module = layer
            weight = { layer.weight }
            bias = { layer.bias }
            running = { (nil, nil) }
        case "instance_norm":
            let spatialRank = try #require(golden.spatialRank)
            let channels = golden.shape[golden.shape.count == spatialRank + 2 ? 1 : 0]
            let options = (affine: try option(golden.affine, "affine", of: golden),
                           tracks: try option(golden.tracksRunningStatistics, "tracksRunningStatistics", of: golden),
                           average: RunningAverage.newBatchWeight(Float(try #require(golden.momentum))))
            let layer: InstanceNorm = switch spatialRank {
            case 1: InstanceNorm1d(channels, epsilon: epsilon, runningAverage: options.average, affine: options.affine,
                                   tracksRunningStatistics: options.tracks)
            case 2: InstanceNorm2d(channels, epsilon: epsilon, runningAverage: options.average, affine: options.affine,
                                   tracksRunningStatistics: options.tracks)
            default: InstanceNorm3d(channels, epsilon: epsilon, runningAverage: options.average,
                                    affine: options.affine, tracksRunningStatistics: options.tracks)
            }
            module = layer
            weight = { layer.weight }
            bias = { layer.bias }
            running = { (layer.runningMean, layer.runningVariance) }
        default:
            throw CocoaError(.coderInvalidValue, userInfo: [NSLocalizedDescriptionKey: "unknown kind \(golden.kind)"])
        }
    }
}

/// A Bool option the case's kind must have (`#require` on a `Bool?` would be ambiguous).
private func option(_ value: Bool?, _ name: String, of golden: SiblingsCase) throws -> Bool {
    guard let value else {
        throw CocoaError(.coderValueNotFound, userInfo: [NSLocalizedDescriptionKey: "\(golden.name) lacks \(name)"])
    }
    return value
}

/// |actual − expected| ≤ 1e-5·max(1, |expected|) at every index, naming the case, quantity and index.
private func expectMatches(_ actual: [Float]?, _ expected: [Double], _ what: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    guard let actual else {
        Issue.record("\(what) is missing (expected \(expected.count) values)", sourceLocation: sourceLocation)
        return
    }
    guard actual.count == expected.count else {
        Issue.record("\(what) has \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    let failures = expected.indices.filter { i in
        !(abs(Double(actual[i]) - expected[i]) <= 1e-5 * max(1, abs(expected[i])))   // NaN fails too
    }
    guard !failures.isEmpty else { return }
    let listing = failures.prefix(4).map { "[\($0)] got \(actual[$0]), expected \(expected[$0])" }
        .joined(separator: "; ")
    Issue.record("\(what): \(failures.count) of \(expected.count) out of tolerance: \(listing)",
                 sourceLocation: sourceLocation)
}


// MARK: - Tests

@Suite("LayerNorm, GroupNorm and InstanceNorm against golden values from an independent NumPy implementation")
struct NormSiblingsGoldenTests {
    @Test("the fixture loads and holds every case, each with a training and an inference step")
    func fixtureHoldsEveryCase() throws {
        let names = try SiblingsGolden.caseNames()
        #expect(Set(names) == SiblingsGolden.expectedCaseNames, "cases in norm_siblings_golden.json: \(names)")
        #expect(names.count == Set(names).count, "duplicate case names: \(names)")
        for golden in try SiblingsGolden.loaded.get().cases {
            #expect(golden.steps.contains { $0.mode == "training" } && golden.steps.last?.mode == "inference",
                    "\(golden.name): steps \(golden.steps.map(\.mode))")
        }
    }

    @Test("outputs, input/weight/bias gradients and running estimates match the reference",
          arguments: try SiblingsGolden.caseNames())
    func matchesReference(caseName: String) throws {
        let golden = try SiblingsGolden.goldenCase(named: caseName)
        let layer = try LayerUnderTest(golden)
        // LayerNorm's parameters are shaped like its normalized dims; the others' are per channel
        // (axis 1, or axis 0 for instance norm's unbatched input).
        let unbatched = golden.spatialRank.map { golden.shape.count == $0 + 1 } ?? false
        let parameterShape = golden.normalizedShape ?? [golden.shape[unbatched ? 0 : 1]]
        if let weight = golden.weight {
            try #require(layer.weight(), "\(caseName): the reference has a weight, the layer none").value =
                Tensor(floats(weight), shape: parameterShape)
        } else {
            #expect(layer.weight() == nil, "\(caseName): the layer has a weight, the reference none")
        }
        if let bias = golden.bias {
            try #require(layer.bias(), "\(caseName): the reference has a bias, the layer none").value =
                Tensor(floats(bias), shape: parameterShape)
        } else {
            #expect(layer.bias() == nil, "\(caseName): the layer has a bias, the reference none")
        }

        for (index, step) in golden.steps.enumerated() {
            let label = "\(caseName) step \(index + 1) (\(step.mode))"
            layer.module.setMode(step.mode == "training" ? .training : .inference)
            layer.weight()?.clearGradient()
            layer.bias()?.clearGradient()
            let inputNode = GradientNode(leaf: "x")
            let y = try layer.module(Tensor(floats(step.x), shape: golden.shape).attached(to: inputNode))
            #expect(y.shape == golden.shape, "\(label): y has shape \(y.shape), expected \(golden.shape)")
            expectMatches(y.scalars, step.y, "\(label) y")

            y.backward(gradient: Tensor(floats(step.dy), shape: golden.shape))
            expectMatches(inputNode.gradient?.scalars, step.dx, "\(label) dx")
            if let dweight = step.dweight {
                #expect(layer.weight()?.gradient?.shape == parameterShape, "\(label): weight gradient shape")
                expectMatches(layer.weight()?.gradient?.scalars, dweight, "\(label) dweight")
            }
            if let dbias = step.dbias { expectMatches(layer.bias()?.gradient?.scalars, dbias, "\(label) dbias") }

            let running = layer.running()
            if let mean = step.runningMean, let variance = step.runningVar {
                expectMatches(running.mean?.scalars, mean, "\(label) running mean")
                expectMatches(running.variance?.scalars, variance, "\(label) running variance (unbiased)")
            } else {
                #expect(running.mean == nil && running.variance == nil, "\(label): running estimates without tracking")
            }
        }
    }
}
