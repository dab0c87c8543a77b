import NormKitCore

/// Updates parameters from their gradients.
///
/// Create one with the parameters it owns (PyTorch: `Adam(model.parameters(), learningRate: 1e-3)`)
/// or without, and let `compile`/`fit` hand them over (Keras). Per-parameter
/// state is kept by parameter identity.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get set }
    var learningRate: Float { get set }
    /// Applies one update to every trainable parameter that has a gradient.
    func step()
    /// The per-parameter state (moments, step counts, velocities) keyed
    /// `<parameter name>.<PyTorch state name>`, e.g. `fc1.weight.exp_avg`.
    /// - Parameter parameterNames: the name of each of `parameters` (see `Module.namedParameters()`).
    func stateDict(parameterNames: [ObjectIdentifier: String]) -> StateDict
    /// Restores what `stateDict(parameterNames:)` saved onto the parameters named in `parameters`.
    /// Nothing changes unless every entry names a known parameter and has its shape.
    func loadStateDict(_ state: StateDict, parameters: [String: Parameter]) throws(StateDictError)
}

extension Optimizer {
    /// Forgets every parameter's gradient (PyTorch's `zero_grad`).
    public func zeroGrad() { for parameter in parameters { parameter.clearGradient() } }
}

/// Adam (Kingma & Ba 2015) with PyTorch's update rule:
/// m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
/// p ← p − lr · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + ε).
/// Optional L2 `weightDecay` adds λ·p to the gradient, as `torch.optim.Adam` does (not AdamW's
/// decoupled decay). With `amsgrad` (Reddi, Kale & Kumar 2018) the denominator uses the largest v
/// seen so far, vmax ← max(vmax, v), so the effective step size never grows. As in PyTorch, t counts
/// each parameter's own updates: a parameter that gets its first gradient late (frozen, then
/// unfrozen) starts its bias correction at t = 1.
public final class Adam: Optimizer {
    public var parameters: [Parameter]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// Whether the denominator uses the running maximum of v (PyTorch's `amsgrad`).
    public let amsgrad: Bool
    /// Calls to `step()` so far.
    public private(set) var stepCount = 0
    var firstMoments: [ObjectIdentifier: [Float]] = [:]
    var secondMoments: [ObjectIdentifier: [Float]] = [:]
    /// The largest v so far, per parameter (only with `amsgrad`).
    var maxSecondMoments: [ObjectIdentifier: [Float]] = [:]
    /// Updates applied to each parameter (its t).
    var parameterStepCounts: [ObjectIdentifier: Int] = [:]

    /// - Precondition: as PyTorch checks: learningRate, epsilon, weightDecay ≥ 0 and β1, β2 in [0, 1)
    ///   (β = 1 makes the bias correction 1 − βᵗ zero and every parameter NaN).
    public init(_ parameters: [Parameter] = [], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0, amsgrad: Bool = false) {
        precondition(learningRate >= 0, "Adam: learningRate must be ≥ 0, got \(learningRate)")
        precondition(beta1 >= 0 && beta1 < 1, "Adam: beta1 must be in [0, 1), got \(beta1)")
        precondition(beta2 >= 0 && beta2 < 1, "Adam: beta2 must be in [0, 1), got \(beta2)")
        precondition(epsilon >= 0, "Adam: epsilon must be ≥ 0, got \(epsilon)")
        precondition(weightDecay >= 0, "Adam: weightDecay must be ≥ 0, got \(weightDecay)")
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
    }

    /// PyTorch spelling: `Adam(model.parameters(), lr: 0.001)`.
    public convenience init(_ parameters: [Parameter] = [], lr: Float) {
        self.init(parameters, learningRate: lr)
    }

    public func step() {
        stepCount += 1
        for parameter in parameters where parameter.isTrainable {
            guard let gradient = parameter.gradient else { continue }
            let key = ObjectIdentifier(parameter)
            let t = (parameterStepCounts[key] ?? 0) + 1
            parameterStepCounts[key] = t
            let correction1 = 1 - Double(beta1).power(t)
            let correction2 = 1 - Double(beta2).power(t)
            let stepSize = Float(Double(learningRate) / correction1)
            let inverseRootCorrection2 = Float(1 / correction2.squareRoot())
            // Moved out of the dictionaries so that they are uniquely referenced:
            // updating them in place then never copies (no allocation per step).
            var m = firstMoments.removeValue(forKey: key) ?? [Float](repeating: 0, count: parameter.value.scalarCount)
            var v = secondMoments.removeValue(forKey: key) ?? [Float](repeating: 0, count: parameter.value.scalarCount)
            let (b1, b2, eps, decay) = (beta1, beta2, epsilon, weightDecay)
            if amsgrad {
                var vMax = maxSecondMoments.removeValue(forKey: key)
                    ?? [Float](repeating: 0, count: parameter.value.scalarCount)
                parameter.value.withUnsafeMutableBufferPointer { p in
                    gradient.withUnsafeBufferPointer { g in
                        for i in p.indices {
                            // Moments below Float's normal range flushed to 0, as in `_adamUpdate`
                            // (subnormal arithmetic is ~100× slower; such a moment moves p by < 1e-30).
                            let gi = g[i] + decay * p[i]
                            let mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi
                            m[i] = abs(mi) < .leastNormalMagnitude ? 0 : mi
                            v[i] = vi < .leastNormalMagnitude ? 0 : vi
                            vMax[i] = max(vMax[i], v[i])
                            p[i] -= stepSize * m[i] / (vMax[i].squareRoot() * inverseRootCorrection2 + eps)
                        }
                    }
                }
                firstMoments[key] = m
                secondMoments[key] = v
                maxSecondMoments[key] = vMax
                continue
            }
            parameter.value.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    m.withUnsafeMutableBufferPointer { m in
                        v.withUnsafeMutableBufferPointer { v in
                            _adamUpdate(p, gradient: g, m: m, v: v, beta1: b1, beta2: b2, epsilon: eps, decay: decay,
                                        stepSize: stepSize, inverseRootCorrection2: inverseRootCorrection2)
                        }
                    }
                }
            }
            firstMoments[key] = m
            secondMoments[key] = v
        }
    }

    /// PyTorch's names: `exp_avg` (m), `exp_avg_sq` (v), `step` (t) and, with `amsgrad`, `max_exp_avg_sq`
    /// per parameter; `step_count` and
    /// the learning rate `lr` overall (loading restores it, as PyTorch's `load_state_dict` does).
    public func stateDict(parameterNames: [ObjectIdentifier: String]) -> StateDict {
        var state: StateDict = ["step_count": .integer(stepCount), "lr": .float(Tensor(scalar: learningRate))]
        for parameter in parameters {
            let key = ObjectIdentifier(parameter)
            guard let name = parameterNames[key], let t = parameterStepCounts[key] else { continue }
            state["\(name).step"] = .integer(t)
            if let m = firstMoments[key] { state["\(name).exp_avg"] = .float(Tensor(m, shape: parameter.shape)) }
            if let v = secondMoments[key] { state["\(name).exp_avg_sq"] = .float(Tensor(v, shape: parameter.shape)) }
            if let vMax = maxSecondMoments[key] {
                state["\(name).max_exp_avg_sq"] = .float(Tensor(vMax, shape: parameter.shape))
            }
        }
        return state
    }

    public func loadStateDict(_ state: StateDict, parameters: [String: Parameter]) throws(StateDictError) {
        var perParameter: [String: StateValue.Kind] = ["exp_avg": .float, "exp_avg_sq": .float, "step": .integer]
        if amsgrad { perParameter["max_exp_avg_sq"] = .float }
        let grouped = try _groupOptimizerState(state, parameters: parameters, perParameter: perParameter,
                                               global: ["step_count": .integer, "lr": .float], optimizer: "Adam")
        firstMoments = [:]
        secondMoments = [:]
        maxSecondMoments = [:]
        parameterStepCounts = [:]
        stepCount = state["step_count"]?.integerScalar ?? 0
        if let lr = state["lr"] { learningRate = lr.floatTensor.scalar }
        for (key, entries) in grouped {
            firstMoments[key] = entries["exp_avg"]?.floatTensor.scalars
            secondMoments[key] = entries["exp_avg_sq"]?.floatTensor.scalars
            maxSecondMoments[key] = entries["max_exp_avg_sq"]?.floatTensor.scalars
            parameterStepCounts[key] = entries["step"]?.integerScalar
        }
    }
}

/// One Adam update of `p` in place. A plain loop over raw pointers in a
/// function of its own: the compiler vectorizes it (16 lanes, with a run-time
/// check that the buffers do not overlap); the same loop inside `step()`'s
/// closures over array buffers stayed scalar and was a third of a seed-MLP
/// training step.
///
/// Moments that fall below Float's normal range are set to 0. A weight whose
/// gradient stays 0 (a pixel that is 0 in every image) has m decaying by β1
/// each step into subnormal numbers, where every multiply costs a microcode
/// assist (~100× slower: it made Adam most of a seed-MLP step). Such an m or v
/// moves p by less than 1e-30 per step, so the flush is below Float's
/// resolution of p (trajectories differ from unflushed ones only as they do
/// under any change of rounding).
private func _adamUpdate(_ p: UnsafeMutableBufferPointer<Float>, gradient g: UnsafeBufferPointer<Float>,
                         m: UnsafeMutableBufferPointer<Float>, v: UnsafeMutableBufferPointer<Float>,
                         beta1 b1: Float, beta2 b2: Float, epsilon eps: Float, decay: Float,
                         stepSize: Float, inverseRootCorrection2: Float) {
    guard let pp = p.baseAddress, let pg = g.baseAddress, let pm = m.baseAddress, let pv = v.baseAddress else { return }
    for i in 0..<p.count {
        let gi = pg[i] + decay * pp[i]
        var mi = b1 * pm[i] + (1 - b1) * gi
        var vi = b2 * pv[i] + (1 - b2) * gi * gi
        mi = abs(mi) < .leastNormalMagnitude ? 0 : mi
        vi = vi < .leastNormalMagnitude ? 0 : vi
        pm[i] = mi
        pv[i] = vi
        pp[i] -= stepSize * mi / (vi.squareRoot() * inverseRootCorrection2 + eps)
    }
}

/// Stochastic gradient descent with optional momentum, PyTorch's rule (`torch.optim.SGD`):
/// g ← g + λ·p (weight decay); b ← μ·b + (1 − τ)·g (b = g on the first step, undampened);
/// p ← p − lr·b (or g + μ·b with Nesterov). τ is the dampening.
public final class SGD: Optimizer {
    public var parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool
    var velocities: [ObjectIdentifier: [Float]] = [:]

    /// - Parameters:
    ///   - momentum: μ ≥ 0; 0 is plain SGD.
    ///   - dampening: τ, the share of each later gradient left out of the momentum buffer (PyTorch's `dampening`).
    ///   - weightDecay: λ ≥ 0, L2 added to the gradient.
    ///   - nesterov: Nesterov momentum; as in PyTorch it needs momentum > 0 and dampening 0 (without
    ///     momentum it would silently be plain SGD).
    public init(_ parameters: [Parameter] = [], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(learningRate >= 0, "SGD: learningRate must be ≥ 0, got \(learningRate)")
        precondition(momentum >= 0, "SGD: momentum must be ≥ 0, got \(momentum)")
        precondition(weightDecay >= 0, "SGD: weightDecay must be ≥ 0, got \(weightDecay)")
        precondition(!nesterov || (momentum > 0 && dampening == 0),
                     "SGD: nesterov needs momentum > 0 and dampening 0, got momentum \(momentum), dampening \(dampening)")
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public func step() {
        for parameter in parameters where parameter.isTrainable {
            guard let gradient = parameter.gradient else { continue }
            let key = ObjectIdentifier(parameter)
            var velocity = velocities[key]
            velocities[key] = nil
            let isFirst = velocity == nil
            if momentum != 0 && isFirst { velocity = [Float](repeating: 0, count: parameter.value.scalarCount) }
            let (lr, mu, decay, useNesterov) = (learningRate, momentum, weightDecay, nesterov)
            let undamped = 1 - dampening
            parameter.value.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    for i in p.indices {
                        var d = g[i] + decay * p[i]
                        if mu != 0 {
                            velocity![i] = isFirst ? d : mu * velocity![i] + undamped * d
                            d = useNesterov ? d + mu * velocity![i] : velocity![i]
                        }
                        p[i] -= lr * d
                    }
                }
            }
            velocities[key] = velocity
        }
    }

    /// PyTorch's name: `momentum_buffer` per parameter (present once a parameter has moved with
    /// momentum); the learning rate `lr` overall (loading restores it, as PyTorch's `load_state_dict` does).
    public func stateDict(parameterNames: [ObjectIdentifier: String]) -> StateDict {
        var state: StateDict = ["lr": .float(Tensor(scalar: learningRate))]
        for parameter in parameters {
            let key = ObjectIdentifier(parameter)
            guard let name = parameterNames[key], let velocity = velocities[key] else { continue }
            state["\(name).momentum_buffer"] = .float(Tensor(velocity, shape: parameter.shape))
        }
        return state
    }

    public func loadStateDict(_ state: StateDict, parameters: [String: Parameter]) throws(StateDictError) {
        let grouped = try _groupOptimizerState(state, parameters: parameters, perParameter: ["momentum_buffer": .float],
                                               global: ["lr": .float], optimizer: "SGD")
        velocities = [:]
        if let lr = state["lr"] { learningRate = lr.floatTensor.scalar }
        for (key, entries) in grouped {
            velocities[key] = entries["momentum_buffer"]?.floatTensor.scalars
        }
    }
}

/// Checks an optimizer state dict against the parameters before anything is changed, and
/// groups its entries by parameter identity: `fc1.weight.exp_avg` → (fc1.weight's Parameter, "exp_avg").
/// - Parameters:
///   - perParameter: the state names the optimizer keeps per parameter, with `.float` (shape of the
///     parameter) or `.integer` (a scalar) kinds.
///   - global: the optimizer-wide scalars (e.g. `step_count`, `lr`) and their kinds.
func _groupOptimizerState(_ state: StateDict, parameters: [String: Parameter],
                          perParameter: [String: StateValue.Kind], global: [String: StateValue.Kind],
                          optimizer: String) throws(StateDictError) -> [ObjectIdentifier: [String: StateValue]] {
    var grouped: [ObjectIdentifier: [String: StateValue]] = [:]
    var unexpected: [String] = []
    var mismatched: [StateDictError.Mismatch] = []
    for (key, value) in state {
        if let kind = global[key] {
            if value.kind != kind || value.shape != [] {
                mismatched.append(.init(key: key, expected: kind == .float ? "float[]" : "int64[]", found: value.description))
            }
            continue
        }
        guard let dot = key.lastIndex(of: "."), let kind = perParameter[String(key[key.index(after: dot)...])],
              let parameter = parameters[String(key[..<dot])] else {
            unexpected.append(key)
            continue
        }
        let expected: StateValue = kind == .float ? .float(.zeros(parameter.shape)) : .integer(0)
        guard value.kind == kind && value.shape == expected.shape else {
            mismatched.append(.init(key: key, expected: expected.description, found: value.description))
            continue
        }
        grouped[ObjectIdentifier(parameter), default: [:]][String(key[key.index(after: dot)...])] = value
    }
    if !unexpected.isEmpty || !mismatched.isEmpty {
        throw StateDictError(missingKeys: [], unexpectedKeys: unexpected.sorted(),
                             mismatchedKeys: mismatched.sorted { $0.key < $1.key }, model: optimizer)
    }
    return grouped
}

extension Double {
    /// self^exponent by repeated squaring: O(log exponent) multiplications. (A loop
    /// of `exponent` multiplications made Adam's bias correction cost grow with
    /// training: 9,375 steps into a run it was ~75,000 multiplications per step.)
    func power(_ exponent: Int) -> Double {
        precondition(exponent >= 0, "power: negative exponent \(exponent)")
        var result = 1.0, base = self, remaining = exponent
        while remaining > 0 {
            if remaining & 1 == 1 { result *= base }
            base *= base
            remaining >>= 1
        }
        return result
    }
}
