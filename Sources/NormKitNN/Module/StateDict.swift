import NormKitCore

/// One entry of a state dict: a Float32 tensor (parameters, running statistics,
/// optimizer moments) or an integer counter (`num_batches_tracked`, Adam's `step`),
/// which PyTorch keeps as int64 and NormKit keeps exact as well.
public enum StateValue: CustomStringConvertible {
    case float(Tensor)
    /// Row-major int64 values of `shape` (`[]` for a scalar).
    case integer([Int64], shape: [Int])

    /// A rank-0 integer, like PyTorch's `num_batches_tracked`.
    public static func integer(_ value: Int) -> StateValue { .integer([Int64(value)], shape: []) }

    public var shape: [Int] {
        switch self {
        case .float(let tensor): tensor.shape
        case .integer(_, let shape): shape
        }
    }

    public var kind: Kind {
        switch self {
        case .float: .float
        case .integer: .integer
        }
    }

    /// Whether the entry holds real numbers or integers.
    public enum Kind: String, Sendable {
        case float, integer
    }

    /// The values as a Float32 tensor (integers converted).
    public var floatTensor: Tensor {
        switch self {
        case .float(let tensor): tensor
        case .integer(let values, let shape): Tensor(values.map { Float($0) }, shape: shape)
        }
    }

    /// The single integer of a rank-0 (or one-element) integer entry.
    public var integerScalar: Int? {
        if case .integer(let values, _) = self, values.count == 1 { return Int(values[0]) }
        return nil
    }

    /// Bit-for-bit equality (NaN equals NaN with the same payload): what "round trip exact" means.
    public func isBitwiseEqual(to other: StateValue) -> Bool {
        switch (self, other) {
        case let (.float(a), .float(b)):
            a.shape == b.shape && a.scalars.map(\.bitPattern) == b.scalars.map(\.bitPattern)
        case let (.integer(a, shapeA), .integer(b, shapeB)):
            shapeA == shapeB && a == b
        default:
            false
        }
    }

    public var description: String {
        switch self {
        case .float(let tensor): "float\(tensor.shape)"
        case .integer(_, let shape): "int64\(shape)"
        }
    }

    /// The kind, shape and (up to 8) values, for messages about values rather than shapes.
    var valuesDescription: String {
        let values = switch self {
        case .float(let tensor): tensor.scalars.prefix(8).map { "\($0)" }
        case .integer(let values, _): values.prefix(8).map { "\($0)" }
        }
        let more = values.count < (self.shape.reduce(1, *)) ? ", …" : ""
        return "\(description) = [\(values.joined(separator: ", "))\(more)]"
    }
}

/// A model's (or an optimizer's) state, keyed by PyTorch-style dotted names:
/// `fc1.weight`, `bn.running_mean`, `bn.num_batches_tracked`, …
public typealias StateDict = [String: StateValue]

/// Why `loadStateDict` refused a state dict. Every problem is listed, not just the first.
public struct StateDictError: Error, Sendable, CustomStringConvertible, Equatable {
    /// An entry whose shape (or kind) differs from the model's.
    public struct Mismatch: Sendable, Equatable, CustomStringConvertible {
        public let key: String
        public let expected: String
        public let found: String
        public var description: String { "\(key): expected \(expected), found \(found)" }
    }

    /// Keys the model has and the state dict lacks.
    public let missingKeys: [String]
    /// Keys the state dict has and the model lacks.
    public let unexpectedKeys: [String]
    /// Keys present in both with a different shape, a float where an integer is needed, or a value
    /// the buffer cannot hold (a negative `num_batches_tracked` or running variance).
    public let mismatchedKeys: [Mismatch]
    /// The model's type, for the message.
    public let model: String

    public var description: String {
        var lines = ["Error(s) loading state dict into \(model):"]
        if !missingKeys.isEmpty { lines.append("  missing keys: \(missingKeys.joined(separator: ", "))") }
        if !unexpectedKeys.isEmpty { lines.append("  unexpected keys: \(unexpectedKeys.joined(separator: ", "))") }
        // Shape, kind (a float for an integer counter) or value (a negative count): "expected" says which.
        for mismatch in mismatchedKeys { lines.append("  mismatch for \(mismatch)") }
        return lines.joined(separator: "\n")
    }
}

/// What a non-strict `loadStateDict` skipped (PyTorch's `_IncompatibleKeys`).
public struct StateDictLoadReport: Sendable, Equatable {
    public let missingKeys: [String]
    public let unexpectedKeys: [String]
}

extension Module {
    /// Every buffer (saved, not trained: BN's running statistics and counter) with its dotted name.
    public func namedBuffers() -> [(String, StateValue)] {
        stateEntries().filter { $0.parameter == nil }.map { ($0.key, $0.value) }
    }

    /// The model's state with PyTorch's names: each module's parameters, then its
    /// buffers, depth first. Linear weights are (out, in), as in PyTorch.
    /// A lazily built layer that has not seen an input yet has no entries.
    public func stateDict() -> StateDict {
        Dictionary(namedState().map { ($0.0, $0.1) }, uniquingKeysWith: { first, _ in first })
    }

    /// `stateDict()` as an ordered list (PyTorch's order: parameters then buffers, module by module).
    public func namedState() -> [(String, StateValue)] {
        stateEntries().map { ($0.key, $0.value) }
    }

    /// One entry of the state: its dotted key, the module that owns it under `name`,
    /// its current value, and the `Parameter` when it is one (nil for a buffer).
    private typealias StateEntry = (key: String, module: Module, name: String, value: StateValue, parameter: Parameter?)

    /// Every parameter and buffer, module by module (parameters, then buffers), depth first:
    /// what `namedState`, `namedBuffers` and `loadStateDict` all walk.
    private func stateEntries() -> [StateEntry] {
        var result: [StateEntry] = []
        for (prefix, module) in namedModules() {
            let qualified = { (name: String) in prefix.isEmpty ? name : "\(prefix).\(name)" }
            for (name, parameter) in module.ownParameters() {
                result.append((qualified(name), module, name, .float(parameter.value), parameter))
            }
            for (name, value) in module.ownBuffers() { result.append((qualified(name), module, name, value, nil)) }
        }
        return result
    }

    /// Copies `state` into the model's parameters and buffers.
    ///
    /// Nothing is changed unless every entry fits: the model's `Parameter`
    /// objects stay the same (an optimizer holding them keeps working) and only
    /// their values are replaced. Float entries load into parameters and float
    /// buffers; integer buffers (`num_batches_tracked`) need integer entries.
    /// Lazily built layers (Keras' `Dense(64)`) that have not seen an input
    /// take their sizes from the entries first (`Module.buildForLoading`), and
    /// are unbuilt again if the load fails.
    /// - Parameter strict: when true (the default, as in PyTorch) missing and
    ///   unexpected keys are errors; mismatched shapes are errors either way.
    /// - Throws: `StateDictError` naming every missing, unexpected and mis-shaped key.
    @discardableResult
    public func loadStateDict(_ state: StateDict, strict: Bool = true) throws(StateDictError) -> StateDictLoadReport {
        let lazyBuilds = buildLazyModules(forLoading: state)
        do {
            return try loadBuiltStateDict(state, strict: strict)
        } catch {
            for undo in lazyBuilds.reversed() { undo() }
            throw error
        }
    }

    /// Lets every module build itself from its entries in `state` (see
    /// `Module.buildForLoading(entryShapes:)`); returns the undo of each build.
    private func buildLazyModules(forLoading state: StateDict) -> [() -> Void] {
        var undos: [() -> Void] = []
        for (prefix, module) in namedModules() {
            let lead = prefix.isEmpty ? "" : prefix + "."
            var shapes: [String: [Int]] = [:]
            for (key, value) in state where key.hasPrefix(lead) {
                let name = key.dropFirst(lead.count)
                if !name.contains(".") { shapes[String(name)] = value.shape }
            }
            if !shapes.isEmpty, let undo = module.buildForLoading(entryShapes: shapes) { undos.append(undo) }
        }
        return undos
    }

    /// Whether a state dict may lack `entry` without it counting as missing: a running-statistics
    /// layer's `num_batches_tracked`. PyTorch added that buffer in 0.4.1, and its `load_state_dict`
    /// accepts a state dict without one (every dict without version metadata, so every file read
    /// through `safetensors`), keeping the layer's own count; refusing such a file here would
    /// refuse what PyTorch loads. The count matters only to `.cumulativeAverage` and Batch
    /// Renormalization's schedule, which then go on from the layer's count, as in PyTorch.
    private static func mayBeAbsent(_ entry: StateEntry) -> Bool {
        entry.module is any _KeepsRunningStatistics && entry.name == "num_batches_tracked"
    }

    private func loadBuiltStateDict(_ state: StateDict, strict: Bool) throws(StateDictError) -> StateDictLoadReport {
        let targets = stateEntries()
        let known = Set(targets.map(\.key))
        let missing = targets.filter { state[$0.key] == nil && !Self.mayBeAbsent($0) }.map(\.key)
        let unexpected = state.keys.filter { !known.contains($0) }.sorted()
        var mismatched: [StateDictError.Mismatch] = []
        for target in targets {
            guard let value = state[target.key] else { continue }
            let kindFits = target.value.kind == .float || value.kind == .integer
            if value.shape != target.value.shape || !kindFits {
                mismatched.append(.init(key: target.key, expected: target.value.description, found: value.description))
            } else if target.module is any _KeepsRunningStatistics,
                      let expected = RunningStatistics.expectationUnmet(byBuffer: target.name, value) {
                mismatched.append(.init(key: target.key, expected: expected, found: value.valuesDescription))
            }
        }
        if !mismatched.isEmpty || (strict && !(missing.isEmpty && unexpected.isEmpty)) {
            throw StateDictError(missingKeys: missing, unexpectedKeys: unexpected, mismatchedKeys: mismatched,
                                 model: String(describing: type(of: self)))
        }
        for target in targets {
            guard let value = state[target.key] else { continue }
            if let parameter = target.parameter {
                parameter.value = value.floatTensor
            } else {
                target.module.setOwnBuffer(target.name, to: value.kind == target.value.kind ? value : .float(value.floatTensor))
            }
        }
        return StateDictLoadReport(missingKeys: missing, unexpectedKeys: unexpected)
    }
}
