// State dicts: PyTorch's names and order, buffers, strict loading that lists
// every problem, and optimizer state keyed by parameter name.

import NormKitCore
@testable import NormKitNN
import Testing

/// fc1 → bn → fc2 with explicit seeds, like the seed model (no GlobalRandom).
private final class SmallNet: Module {
    let fc1: Linear
    let bn = BatchNorm1d(3)
    let fc2: Linear
    init(seed: UInt64, inputs: Int = 4) {
        fc1 = makeLinear(inputs, 3, seed: seed)
        fc2 = makeLinear(3, 2, seed: seed + 1)
        super.init()
    }
    override func forward(_ x: Tensor) throws -> Tensor { try fc2(relu(bn(fc1(x)))) }
}

/// A layer from outside NormKitNN's own files that joins state dicts by overriding the buffer hooks.
private final class CountingLayer: Module {
    var seen: Int64 = 0
    var total = Tensor.zeros([2])
    override func ownBuffers() -> [(String, StateValue)] { [("seen", .integer([seen], shape: [])), ("total", .float(total))] }
    override func setOwnBuffer(_ name: String, to value: StateValue) {
        if name == "seen" { seen = Int64(value.integerScalar!) } else { total = value.floatTensor }
    }
    override func forward(_ x: Tensor) throws -> Tensor { x }
}

private func bits(_ state: StateDict) -> [String: [UInt64]] {
    state.mapValues { value in
        switch value {
        case .float(let tensor): tensor.scalars.map { UInt64($0.bitPattern) }
        case .integer(let values, _): values.map { UInt64(bitPattern: $0) }
        }
    }
}

@Suite("State dicts")
struct StateDictTests {
    @Test("names, order and shapes follow PyTorch: parameters then buffers, Linear weight (out, in), counter int64")
    func pytorchNamesAndOrder() throws {
        let net = SmallNet(seed: 1)
        let state = net.namedState()
        #expect(state.map(\.0) == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                   "bn.num_batches_tracked", "fc2.weight", "fc2.bias"])
        #expect(state.map(\.1.shape) == [[3, 4], [3], [3], [3], [3], [3], [], [2, 3], [2]])
        #expect(state[6].1.kind == .integer)
        #expect(net.namedBuffers().map(\.0) == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
    }

    @Test("a state dict without num_batches_tracked (PyTorch before 0.4.1) loads strictly and keeps the count, as PyTorch's load_state_dict does")
    func legacyStateDictWithoutBatchCount() throws {
        let source = SmallNet(seed: 1)
        source.bn.runningMean = Tensor([1, 2, 3])
        var state = source.stateDict()
        state["bn.num_batches_tracked"] = nil
        let net = SmallNet(seed: 2)
        net.train()
        _ = try net(Tensor((0..<8).map { Float($0) }, shape: [2, 4]))

        let report = try net.loadStateDict(state)

        #expect(report.missingKeys.isEmpty)
        #expect(try #require(net.bn.runningMean).scalars == [1, 2, 3])
        #expect(net.bn.numBatchesTracked == 1)
        state["fc1.bias"] = nil
        #expect(throws: StateDictError.self) { try net.loadStateDict(state) }
    }

    @Test("a BatchNorm without running statistics has no buffers, as in PyTorch")
    func noTrackingNoBuffers() {
        let layer = BatchNorm1d(3, tracksRunningStatistics: false)
        #expect(layer.namedBuffers().isEmpty)
        #expect(layer.stateDict().keys.sorted() == ["bias", "weight"])
    }

    @Test("the other normalization layers carry PyTorch's state-dict names, with buffers only when running statistics are tracked")
    func normalizationSiblings() throws {
        let model = Sequential {
            GroupNorm(groupCount: 2, channelCount: 4)
            LayerNorm(4)
            InstanceNorm1d(4)
            InstanceNorm1d(4, affine: true, tracksRunningStatistics: true)
        }
        #expect(model.namedState().map(\.0) == [
            "0.weight", "0.bias", "1.weight", "1.bias",
            "3.weight", "3.bias", "3.running_mean", "3.running_var", "3.num_batches_tracked",
        ])
        let tracked = try #require(model.layers[3] as? InstanceNorm)
        var state = model.stateDict()
        state["3.running_var"] = .float(Tensor([2, 3, 4, 5]))
        state["3.num_batches_tracked"] = .integer(6)
        try model.loadStateDict(state)
        #expect(tracked.runningVariance?.scalars == [2, 3, 4, 5] && tracked.numBatchesTracked == 6)
    }

    @Test("loading another model's state copies parameters and buffers exactly and keeps the Parameter objects")
    func loadCopiesEverything() throws {
        let trained = SmallNet(seed: 1)
        _ = try trained(Tensor((0..<20).map { Float($0) * 0.37 }, shape: [5, 4]))   // moves the running statistics
        let fresh = SmallNet(seed: 9)
        let weight = fresh.fc1.weight!
        try fresh.loadStateDict(trained.stateDict())
        #expect(bits(fresh.stateDict()) == bits(trained.stateDict()))
        #expect(fresh.bn.numBatchesTracked == 1)
        #expect(fresh.fc1.weight === weight, "an optimizer holding the old Parameter must see the loaded value")
    }

    @Test("strict loading names every missing, unexpected and mis-shaped key, with expected and found shapes, and changes nothing")
    func strictErrorListsEverything() throws {
        let net = SmallNet(seed: 1)
        let before = bits(net.stateDict())
        var state = SmallNet(seed: 2, inputs: 5).stateDict()   // fc1.weight is (3, 5) there
        state["bn.running_var"] = nil
        state["bn.num_batches_tracked"] = nil
        state["fc3.weight"] = .float(.zeros([1]))
        state["bn.running_mean"] = .integer([0, 0, 0], shape: [3])   // an integer may fill a float slot (converted)
        state["fc2.bias"] = .float(.zeros([2, 1]))
        let error = try #require(throws: StateDictError.self) { try net.loadStateDict(state) }
        // num_batches_tracked may be absent (PyTorch before 0.4.1), see legacyStateDictWithoutBatchCount.
        #expect(error.missingKeys == ["bn.running_var"])
        #expect(error.unexpectedKeys == ["fc3.weight"])
        #expect(error.mismatchedKeys.map(\.key) == ["fc1.weight", "fc2.bias"])
        #expect(error.mismatchedKeys[0].expected == "float[3, 4]" && error.mismatchedKeys[0].found == "float[3, 5]")
        for key in ["bn.running_var", "fc3.weight", "fc1.weight", "float[3, 4]", "float[3, 5]", "fc2.bias"] {
            #expect(error.description.contains(key), "the message names \(key)")
        }
        #expect(bits(net.stateDict()) == before, "a refused state dict leaves the model unchanged")
    }

    @Test("non-strict loading skips missing and unexpected keys and reports them; shape mismatches still throw")
    func nonStrictLoading() throws {
        let net = SmallNet(seed: 1)
        var state = SmallNet(seed: 2).stateDict()
        state["fc2.bias"] = nil
        state["extra"] = .integer(3)
        let report = try net.loadStateDict(state, strict: false)
        #expect(report == StateDictLoadReport(missingKeys: ["fc2.bias"], unexpectedKeys: ["extra"]))
        #expect(net.fc1.weight!.value.scalars == SmallNet(seed: 2).fc1.weight!.value.scalars)
        state["fc1.bias"] = .float(.zeros([4]))
        #expect(throws: StateDictError.self) { try net.loadStateDict(state, strict: false) }
    }

    @Test("a float entry cannot fill an integer buffer")
    func floatIntoCounterIsRefused() throws {
        let net = SmallNet(seed: 1)
        var state = net.stateDict()
        state["bn.num_batches_tracked"] = .float(Tensor(scalar: 2.5))
        let error = try #require(throws: StateDictError.self) { try net.loadStateDict(state) }
        #expect(error.mismatchedKeys == [.init(key: "bn.num_batches_tracked", expected: "int64[]", found: "float[]")])
    }

    @Test("a negative batch count or running variance is refused, naming the key and the values, and changes nothing")
    func impossibleRunningStatisticsAreRefused() throws {
        let net = SmallNet(seed: 1)
        let tracked = InstanceNorm1d(3, tracksRunningStatistics: true)
        let before = bits(net.stateDict())
        var state = SmallNet(seed: 2).stateDict()
        state["bn.num_batches_tracked"] = .integer(-1)
        state["bn.running_var"] = .float(Tensor([1, -0.5, 2]))
        let error = try #require(throws: StateDictError.self) { try net.loadStateDict(state) }
        #expect(error.mismatchedKeys == [
            .init(key: "bn.running_var", expected: "variances ≥ 0", found: "float[3] = [1.0, -0.5, 2.0]"),
            .init(key: "bn.num_batches_tracked", expected: "a count ≥ 0", found: "int64[] = [-1]"),
        ])
        #expect(bits(net.stateDict()) == before, "a refused state dict leaves the model unchanged")
        // InstanceNorm keeps the same buffers and the same rule; valid values still load.
        var instanceState = tracked.stateDict()
        instanceState["num_batches_tracked"] = .integer(-3)
        #expect(throws: StateDictError.self) { try tracked.loadStateDict(instanceState) }
        instanceState["num_batches_tracked"] = .integer(0)
        instanceState["running_var"] = .float(Tensor([0, 1, 2]))
        try tracked.loadStateDict(instanceState)
        #expect(tracked.runningVariance?.scalars == [0, 1, 2])
    }

    @Test("SeedMLP(shapedLike:) takes its sizes and batch norm from a state dict, and refuses one without fc1/fc2 weights")
    func seedModelShapedLikeStateDict() throws {
        let source = SeedMLP(inputFeatures: 12, hiddenFeatures: 5, classes: 3)
        let copy = try SeedMLP(shapedLike: source.stateDict())
        #expect(copy.fc1.inFeatures == 12 && copy.fc1.outFeatures == 5 && copy.fc2.outFeatures == 3 && copy.bn != nil)
        try copy.loadStateDict(source.stateDict())
        #expect(try SeedMLP(shapedLike: SeedMLP(inputFeatures: 6, batchNorm: false).stateDict()).bn == nil)
        var broken = source.stateDict()
        broken["fc2.weight"] = nil
        broken["fc1.weight"] = .float(.zeros([60]))
        let error = try #require(throws: StateDictError.self) { try SeedMLP(shapedLike: broken) }
        #expect(error.missingKeys == ["fc2.weight"])
        #expect(error.mismatchedKeys == [.init(key: "fc1.weight", expected: "float[out, in]", found: "float[60]")])
    }

    /// Keras' spelling, sizes taken from the first input: Dense, BatchNormalization, LayerNormalization.
    private func lazyKerasModel(seed: UInt64) -> Sequential {
        Sequential {
            Linear(outFeatures: 5, generator: SeededGenerator(seed: seed))
            BatchNormalization()
            ReLU()
            LayerNormalization()
            Linear(outFeatures: 3, generator: SeededGenerator(seed: seed + 1))
        }
    }

    @Test("a Keras-style model that has not seen an input yet builds its lazy layers from the loaded shapes, as PyTorch's lazy modules do")
    func lazyLayersBuildFromLoadedState() throws {
        let trained = lazyKerasModel(seed: 1)
        let x = Tensor((0..<24).map { Float($0 % 7) * 0.3 - 0.8 }, shape: [4, 6])
        _ = try trained(x)                       // builds, and moves the running statistics
        trained.setMode(.inference)
        let fresh = lazyKerasModel(seed: 9)
        #expect(fresh.stateDict().isEmpty)
        try fresh.loadStateDict(trained.stateDict())
        #expect(bits(fresh.stateDict()) == bits(trained.stateDict()))
        fresh.setMode(.inference)
        #expect(try fresh(x).scalars == trained(x).scalars)
    }

    @Test("a failed load leaves lazy layers unbuilt, drawing later the same initial weights as a model never loaded into")
    func failedLoadLeavesLazyLayersUnbuilt() throws {
        let source = lazyKerasModel(seed: 1)
        let x = Tensor((0..<24).map { Float($0 % 5) * 0.4 - 1 }, shape: [4, 6])
        _ = try source(x)
        var broken = source.stateDict()
        broken["4.bias"] = .float(.zeros([7]))   // the last layer's bias does not fit its weight
        let model = lazyKerasModel(seed: 2)
        let error = try #require(throws: StateDictError.self) { try model.loadStateDict(broken) }
        #expect(error.mismatchedKeys.map(\.key) == ["4.bias"])
        #expect(model.stateDict().isEmpty)
        let untouched = lazyKerasModel(seed: 2)
        #expect(try model(x).scalars == untouched(x).scalars)
    }

    @Test("a lazy layer whose entries cannot be its own stays unbuilt and its keys are reported unexpected")
    func lazyLayerRefusesForeignShapes() throws {
        let model = Sequential { Linear(outFeatures: 5, generator: SeededGenerator(seed: 1)) }
        let foreign: StateDict = ["0.weight": .float(.zeros([4, 6])), "0.bias": .float(.zeros([4]))]
        let error = try #require(throws: StateDictError.self) { try model.loadStateDict(foreign) }
        #expect(error.unexpectedKeys == ["0.bias", "0.weight"])
        #expect(model.stateDict().isEmpty)
    }

    @Test("a layer defined elsewhere joins state dicts by overriding ownBuffers and setOwnBuffer")
    func customBuffersJoin() throws {
        let model = Sequential { CountingLayer() }
        #expect(model.stateDict().keys.sorted() == ["0.seen", "0.total"])
        try model.loadStateDict(["0.seen": .integer(41), "0.total": .float(Tensor([1, 2]))])
        let layer = try #require(model.layers[0] as? CountingLayer)
        #expect(layer.seen == 41 && layer.total.scalars == [1, 2])
    }
}

@Suite("Optimizer state")
struct OptimizerStateTests {
    /// Two Adam (or SGD) steps on a tiny regression, from fixed data.
    private func trainSteps(_ net: SmallNet, _ optimizer: any Optimizer, steps: Int) throws {
        let x = Tensor((0..<24).map { Float($0 % 7) * 0.3 - 1 }, shape: [6, 4])
        for _ in 0..<steps {
            optimizer.zeroGrad()
            let y = try net(x)
            (y * y).sum().backward()
            optimizer.step()
        }
    }

    private func names(_ net: Module) -> [ObjectIdentifier: String] {
        Dictionary(uniqueKeysWithValues: net.namedParameters().map { (ObjectIdentifier($0.1), $0.0) })
    }

    @Test("Adam's moments and step counts, saved by parameter name and loaded into another model, continue identically",
          arguments: [false, true])
    func optimizerStateContinues(usesSGD: Bool) throws {
        func makeOptimizer(_ net: SmallNet) -> any Optimizer {
            usesSGD ? SGD(net.parameters(), learningRate: 0.05, momentum: 0.9) : Adam(net.parameters(), learningRate: 0.05)
        }
        let reference = SmallNet(seed: 1), referenceOptimizer = makeOptimizer(reference)
        try trainSteps(reference, referenceOptimizer, steps: 2)
        let saved = (model: reference.stateDict(), optimizer: referenceOptimizer.stateDict(parameterNames: names(reference)))
        if usesSGD {
            #expect(saved.optimizer.keys.sorted().first == "bn.bias.momentum_buffer")
            #expect(saved.optimizer["lr"]?.floatTensor.scalar == 0.05)
        } else {
            #expect(saved.optimizer["fc1.weight.exp_avg"]?.shape == [3, 4])
            #expect(saved.optimizer["fc1.weight.step"]?.integerScalar == 2)
            #expect(saved.optimizer["step_count"]?.integerScalar == 2)
        }
        try trainSteps(reference, referenceOptimizer, steps: 2)

        let resumed = SmallNet(seed: 5), resumedOptimizer = makeOptimizer(resumed)
        resumedOptimizer.learningRate = 1   // restored from the state, as torch.optim's load_state_dict does
        try resumed.loadStateDict(saved.model)
        try resumedOptimizer.loadStateDict(saved.optimizer,
                                           parameters: Dictionary(uniqueKeysWithValues: resumed.namedParameters()))
        try trainSteps(resumed, resumedOptimizer, steps: 2)
        #expect(bits(resumed.stateDict()) == bits(reference.stateDict()))
    }

    @Test("optimizer state naming an unknown parameter or with the wrong shape is refused")
    func badOptimizerState() throws {
        let net = SmallNet(seed: 1)
        let adam = Adam(net.parameters())
        let parameters = Dictionary(uniqueKeysWithValues: net.namedParameters())
        let error = try #require(throws: StateDictError.self) {
            try adam.loadStateDict(["fc9.weight.exp_avg": .float(.zeros([1])), "fc1.bias.exp_avg": .float(.zeros([4])),
                                    "fc1.bias.step": .integer(1)], parameters: parameters)
        }
        #expect(error.unexpectedKeys == ["fc9.weight.exp_avg"])
        #expect(error.mismatchedKeys == [.init(key: "fc1.bias.exp_avg", expected: "float[3]", found: "float[4]")])
    }
}
