// Parameter and sub-module discovery, names, and modes.

import NormKitCore
@testable import NormKitNN
import Testing

private struct ProbeFailure: Error {}

@Suite("Module discovery and modes")
struct ModuleTests {
    /// Linear → (BatchNorm1d → ReLU) → Linear, with a nested Sequential.
    private func nestedModel() -> (model: Sequential, inner: Sequential) {
        let inner = Sequential {
            BatchNorm1d(3)
            ReLU()
        }
        let model = Sequential {
            makeLinear(4, 3, seed: 1)
            inner
            makeLinear(3, 2, seed: 2)
        }
        return (model, inner)
    }

    @Test("Sequential names parameters by position, descending into nested modules")
    func sequentialParameterNames() {
        let (model, _) = nestedModel()
        #expect(model.namedParameters().map(\.0) == [
            "0.weight", "0.bias",
            "1.0.weight", "1.0.bias",
            "2.weight", "2.bias",
        ])
        #expect(model.namedModules().map(\.0) == ["", "0", "1", "1.0", "1.1",
                                                  "2"])
        #expect(model.parameterCount == (4 * 3 + 3) + (3 + 3) + (3 * 2 + 2))
    }

    @Test("parameters() returns the layers' own Parameter objects, so updates through them reach the layers")
    func parametersAreShared() throws {
        let layer = makeLinear(2, 2, seed: 3)
        let model = Sequential { layer }
        let parameter = try #require(model.parameters().first)
        #expect(parameter === layer.weight)
        parameter.value = Tensor.zeros([2, 2])
        #expect(layer.weight?.value.scalars == [0, 0, 0, 0])
    }

    @Test("trainableParameters() leaves out frozen parameters")
    func trainableParametersSkipFrozen() throws {
        let (model, _) = nestedModel()
        try #require(model.parameters().first).isTrainable = false
        #expect(model.trainableParameters().count == model.parameters().count - 1)
    }

    @Test("eval() and train() set the mode of every module in the tree")
    func modePropagatesToChildren() {
        let (model, _) = nestedModel()
        #expect(model.namedModules().allSatisfy { $0.1.mode == .training }, "modules start in training")

        model.eval()
        #expect(model.namedModules().allSatisfy { $0.1.mode == .inference })

        model.train()
        #expect(model.namedModules().allSatisfy { $0.1.mode == .training })

        model.setMode(.inference)
        #expect(model.namedModules().allSatisfy { $0.1.mode == .inference })
    }

    @Test("setMode on a sub-module changes only that subtree")
    func setModeOnChildStaysInSubtree() {
        let (model, inner) = nestedModel()
        inner.eval()
        for (name, module) in model.namedModules() {
            #expect(module.mode == (name.hasPrefix("1") ? .inference : .training), "\(name)")
        }
    }

    @Test("withMode runs its body in the mode and then restores every module's own previous mode")
    func withModeRestoresMixedModes() throws {
        let (model, inner) = nestedModel()
        inner.eval()
        let before = model.namedModules().map(\.1.mode)

        let seenInside = model.withMode(.training) { model.namedModules().map(\.1.mode) }

        #expect(seenInside.allSatisfy { $0 == .training })
        #expect(model.namedModules().map(\.1.mode) == before)
    }

    @Test("withMode restores the modes when its body throws")
    func withModeRestoresAfterThrow() {
        let (model, _) = nestedModel()
        #expect(throws: ProbeFailure.self) {
            try model.withMode(.inference) { () throws -> Void in throw ProbeFailure() }
        }
        #expect(model.namedModules().allSatisfy { $0.1.mode == .training })
    }

    @Test("a layer in a Sequential sees the model's mode in its forward")
    func forwardSeesMode() throws {
        let probe = ModeProbe()
        let model = Sequential { probe }
        _ = try model(Tensor.ones([1, 1]))
        model.eval()
        _ = try model(Tensor.ones([1, 1]))
        #expect(probe.observations.map(\.mode) == [.training, .inference])
    }

    @Test("summary lists every sub-module with its parameter count and the total")
    func summaryListsModules() {
        let (model, _) = nestedModel()
        let summary = model.summary()
        #expect(summary.contains("0"))
        #expect(summary.contains("Linear(4 → 3)"))
        #expect(summary.contains("params: 15"))
        #expect(summary.contains("total parameters: \(model.parameterCount)"))
    }

    @Test("parameterCount counts frozen parameters too; trainableParameterCount and the summary leave them out")
    func frozenParametersAreNotCountedAsTrainable() {
        let batchNorm = BatchNorm1d(3)
        let model = Sequential { makeLinear(4, 3, seed: 1); batchNorm }
        batchNorm.freeze()

        #expect(model.parameterCount == 4 * 3 + 3 + 2 * 3)
        #expect(model.trainableParameterCount == 4 * 3 + 3)
        #expect(model.summary().contains("trainable parameters: 15"), "\(model.summary())")
    }

    @Test("Module.zeroGrad forgets every parameter's gradient, also those no optimizer holds (PyTorch's zero_grad)")
    func moduleZeroGrad() throws {
        let first = makeLinear(3, 2, seed: 42), second = makeLinear(2, 1, seed: 43)
        let model = Sequential {
            first
            second
        }
        let optimizer = SGD(second.parameters(), learningRate: 0.1)
        try model(tensor([0.5, -1, 2], shape: [1, 3])).sum().backward()
        optimizer.zeroGrad()
        #expect(first.parameters().allSatisfy { $0.gradient != nil }, "the optimizer clears only its own")

        model.zeroGrad()

        #expect(model.parameters().allSatisfy { $0.gradient == nil })
    }

    @Test("a module used twice lists its parameters once, so Adam updates them once per step, as in PyTorch")
    func sharedModuleParametersOnce() throws {
        let block = makeLinear(3, 3, seed: 41)
        let model = Sequential {
            block
            ReLU()
            block
        }
        #expect(model.parameters().count == 2)
        #expect(model.parameterCount == 12)
        let weight = try #require(block.weight)
        let before = weight.value.scalars
        let adam = Adam(model.parameters(), learningRate: 0.1)
        try model(tensor([0.5, -1, 2, 1.5, 0.25, -0.75], shape: [2, 3])).sum().backward()
        adam.step()
        // Adam's first step moves every weight with a gradient by lr·g/(|g| + ε) ≈ ±0.1; twice it was ±0.2.
        let gradient = try #require(weight.gradient).scalars
        for (index, (old, new)) in zip(before, weight.value.scalars).enumerated() where abs(gradient[index]) > 1e-3 {
            let moved = Double(new) - Double(old)
            #expect(abs(abs(moved) - 0.1) < 1e-4, "weight \(index) moved by \(moved)")
        }
        let state = adam.stateDict(parameterNames: [ObjectIdentifier(weight): "weight"])
        #expect(state["weight.step"]?.integerScalar == 1)
    }
}
