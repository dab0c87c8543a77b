import NormKitCore

/// Whether a model computes as in training or as in inference.
///
/// Batch normalization uses the batch's statistics and updates its running
/// estimates in `.training`; it uses the running estimates in `.inference`.
/// `fit` and `trainOnBatch` run in `.training`, `evaluate` and `predict` in
/// `.inference`, and each restores the mode it found. A module starts in
/// `.training` (PyTorch's rule); a Keras-style `Sequential(inputShape:)` starts in
/// `.inference`, so that calling it outside `fit` infers, as Keras' `model(x)` does.
public enum Mode: String, Sendable {
    case training, inference
}

/// The base of every layer and model (PyTorch's `nn.Module`, Keras' `Layer`).
///
/// Subclasses override `forward(_:)`. Parameters and sub-modules are found by
/// reflection over stored properties — a `Parameter`, a `Module`, an optional
/// of either or an array of modules — so a model never lists them by hand;
/// their names follow PyTorch's state-dict convention (`fc1.weight`, `bn.running_mean`).
/// Buffers (saved but not trained) are declared by overriding `ownBuffers()`.
open class Module: CustomStringConvertible {
    /// Training or inference: set it for the whole tree with `setMode(_:)`.
    /// (Settable inside the module so that `trainOnBatch` can switch and restore
    /// the tree it keeps without walking it by reflection on every call.)
    public internal(set) var mode: Mode = .training
    /// What `compile(optimizer:loss:metrics:)` configured, if anything.
    var compiled: CompiledConfiguration?
    /// Whether `fit` may run its fused step (see `FusedTrainingStep`); tests turn it
    /// off to compare the fused step with the general autodiff step.
    var allowsFusedTrainingStep = true
    /// What `trainOnBatch` keeps from one call to the next (its fused step); `compile` drops it.
    var batchTraining: BatchTrainingState?

    public init() {}

    /// The layer's computation. Shapes are the subclass's contract.
    open func forward(_ input: Tensor) throws -> Tensor {
        preconditionFailure("\(type(of: self)) must override forward(_:)")
    }

    /// Keras-style build: creates parameters whose size depends on the input
    /// and returns the output shape. `inputShape` includes the batch axis.
    /// Shape-preserving layers keep the default.
    open func build(inputShape: [Int]) -> [Int] { inputShape }

    /// For a layer whose sizes come from its first input (Keras' `Dense(64)`) and
    /// that has not seen one yet: builds it with the sizes the entries
    /// `loadStateDict` is about to load imply, as PyTorch's lazy modules do, so a
    /// fresh Keras-style model can load saved weights before its first call.
    ///
    /// - Parameter shapes: this module's own entries (names without the module's
    ///   prefix, e.g. `weight`, `running_mean`) and their shapes.
    /// - Returns: how to undo the build (a failed load changes nothing), or nil
    ///   when nothing was built. Layers of fixed size keep this default.
    open func buildForLoading(entryShapes shapes: [String: [Int]]) -> (() -> Void)? { nil }

    public func callAsFunction(_ input: Tensor) throws -> Tensor { try forward(input) }

    /// A short description of the layer's configuration, e.g. `Linear(784 → 64)`.
    open var description: String { String(describing: type(of: self)) }

    // MARK: Mode

    /// Puts this module and every sub-module in `mode`.
    public func setMode(_ mode: Mode) {
        for (_, module) in namedModules() { module.mode = mode }
    }

    /// PyTorch spelling of `setMode(.training)`.
    public func train() { setMode(.training) }
    /// PyTorch spelling of `setMode(.inference)`.
    public func eval() { setMode(.inference) }

    /// Runs `body` in `mode`, then restores each module's previous mode.
    public func withMode<R>(_ mode: Mode, _ body: () throws -> R) rethrows -> R {
        let previous = namedModules().map { ($0.1, $0.1.mode) }
        setMode(mode)
        defer { for (module, old) in previous { module.mode = old } }
        return try body()
    }

    // MARK: Discovery

    /// This module and all sub-modules, depth first, with dotted names ("" for self).
    public func namedModules() -> [(String, Module)] {
        var result: [(String, Module)] = [("", self)]
        for (name, child) in namedChildren() {
            for (subName, module) in child.namedModules() {
                result.append((subName.isEmpty ? name : "\(name).\(subName)", module))
            }
        }
        return result
    }

    /// Every parameter with its dotted name, in declaration order.
    public func namedParameters() -> [(String, Parameter)] {
        var result: [(String, Parameter)] = []
        for (prefix, module) in namedModules() {
            for (name, parameter) in module.ownParameters() {
                result.append((prefix.isEmpty ? name : "\(prefix).\(name)", parameter))
            }
        }
        return result
    }

    /// Every parameter once, in declaration order (PyTorch's `parameters()`). A module used
    /// twice (tied weights) lists its parameters where they first appear: listed twice, an
    /// optimizer built from this list would update them twice per step (Adam's t advancing by 2)
    /// and `parameterCount` would count them twice. `namedParameters()` keeps every name.
    public func parameters() -> [Parameter] {
        var seen = Set<ObjectIdentifier>()
        return namedParameters().map(\.1).filter { seen.insert(ObjectIdentifier($0)).inserted }
    }

    /// Forgets the gradient of every parameter, trainable or not (PyTorch's `model.zero_grad()`,
    /// which sets them to None). `optimizer.zeroGrad()` clears only the optimizer's parameters:
    /// a hand-written loop with several optimizers, or one over part of the model, needs this.
    public func zeroGrad() { for parameter in parameters() { parameter.clearGradient() } }

    /// Every parameter that trains.
    public func trainableParameters() -> [Parameter] { parameters().filter(\.isTrainable) }

    /// The direct sub-modules with their property names (array elements as "name.0").
    open func namedChildren() -> [(String, Module)] {
        var result: [(String, Module)] = []
        for (label, value) in storedProperties() {
            if let module = value as? Module {
                result.append((label, module))
            } else if let modules = value as? [Module] {
                for (index, module) in modules.enumerated() { result.append(("\(label).\(index)", module)) }
            }
        }
        return result
    }

    /// The parameters stored directly on this module.
    open func ownParameters() -> [(String, Parameter)] {
        storedProperties().compactMap { label, value in (value as? Parameter).map { (label, $0) } }
    }

    /// The buffers stored directly on this module: state that is saved with the
    /// model but not trained (BatchNorm's `running_mean`, `running_var`,
    /// `num_batches_tracked`). A layer with buffers overrides this and
    /// `setOwnBuffer(_:to:)`; `stateDict()` and `loadStateDict(_:strict:)` find them here.
    open func ownBuffers() -> [(String, StateValue)] { [] }

    /// Replaces the buffer `name` (one of `ownBuffers()`) with `value`, which
    /// `loadStateDict` has already checked to have the buffer's shape and kind.
    open func setOwnBuffer(_ name: String, to value: StateValue) {
        preconditionFailure("\(type(of: self)) lists buffer '\(name)' in ownBuffers() but does not override setOwnBuffer(_:to:)")
    }

    /// Stored properties of the dynamic type and its superclasses below `Module`,
    /// with a leading underscore stripped from names (so `_weight` is `weight`).
    private func storedProperties() -> [(String, Any)] {
        var result: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let current = mirror, current.subjectType != Module.self {
            let own = current.children.compactMap { child -> (String, Any)? in
                guard var label = child.label else { return nil }
                if label.hasPrefix("_") { label.removeFirst() }
                return (label, child.value)
            }
            result = own + result
            mirror = current.superclassMirror
        }
        return result
    }

    /// The number of parameter scalars, trainable or not (PyTorch's `sum(p.numel() for p in
    /// model.parameters())`, Keras' "Total params" without the buffers).
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.value.scalarCount } }
    /// The number of scalars the optimizer updates: `parameterCount` without frozen
    /// parameters (a `freeze()`d batch norm's γ and β), Keras' "Trainable params".
    public var trainableParameterCount: Int { trainableParameters().reduce(0) { $0 + $1.value.scalarCount } }

    /// A Keras-like summary: one line per module with its parameter count.
    public func summary() -> String {
        var lines = ["\(type(of: self)) (mode: \(mode.rawValue))"]
        for (name, module) in namedModules() where !name.isEmpty {
            let count = module.ownParameters().reduce(0) { $0 + $1.1.value.scalarCount }
            let padded = name + String(repeating: " ", count: max(0, 12 - name.count))
            lines.append("  \(padded) \(module.description)  params: \(count)")
        }
        lines.append("  total parameters: \(parameterCount)")
        lines.append("  trainable parameters: \(trainableParameterCount)")
        return lines.joined(separator: "\n")
    }
}
