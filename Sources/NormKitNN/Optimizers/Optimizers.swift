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
}

extension Optimizer {
    /// Forgets every parameter's gradient (PyTorch's `zero_grad`).
    public func zeroGrad() { for parameter in parameters { parameter.clearGradient() } }
}

/// Adam (Kingma & Ba 2015) with PyTorch's update rule:
/// m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
/// p ← p − lr · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + ε).
/// Optional L2 `weightDecay` adds λ·p to the gradient, as `torch.optim.Adam` does.
/// As in PyTorch, t counts each parameter's own updates: a parameter that gets
/// its first gradient late (frozen, then unfrozen) starts its bias correction at t = 1.
public final class Adam: Optimizer {
    public var parameters: [Parameter]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// Calls to `step()` so far.
    public private(set) var stepCount = 0
    var firstMoments: [ObjectIdentifier: [Float]] = [:]
    var secondMoments: [ObjectIdentifier: [Float]] = [:]
    /// Updates applied to each parameter (its t).
    var parameterStepCounts: [ObjectIdentifier: Int] = [:]

    public init(_ parameters: [Parameter] = [], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
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
            var m = firstMoments[key] ?? [Float](repeating: 0, count: parameter.value.scalarCount)
            var v = secondMoments[key] ?? [Float](repeating: 0, count: parameter.value.scalarCount)
            firstMoments[key] = nil
            secondMoments[key] = nil
            let (b1, b2, eps, decay) = (beta1, beta2, epsilon, weightDecay)
            parameter.value.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    for i in p.indices {
                        let gi = g[i] + decay * p[i]
                        m[i] = b1 * m[i] + (1 - b1) * gi
                        v[i] = b2 * v[i] + (1 - b2) * gi * gi
                        p[i] -= stepSize * m[i] / ((v[i]).squareRoot() * inverseRootCorrection2 + eps)
                    }
                }
            }
            firstMoments[key] = m
            secondMoments[key] = v
        }
    }
}

/// Stochastic gradient descent with optional momentum, PyTorch's rule:
/// b ← μ·b + g (b = g on the first step); p ← p − lr·b (or g + μ·b with Nesterov).
public final class SGD: Optimizer {
    public var parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool
    var velocities: [ObjectIdentifier: [Float]] = [:]

    public init(_ parameters: [Parameter] = [], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0,
                nesterov: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
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
            parameter.value.withUnsafeMutableBufferPointer { p in
                gradient.withUnsafeBufferPointer { g in
                    for i in p.indices {
                        var d = g[i] + decay * p[i]
                        if mu != 0 {
                            velocity![i] = isFirst ? d : mu * velocity![i] + d
                            d = useNesterov ? d + mu * velocity![i] : velocity![i]
                        }
                        p[i] -= lr * d
                    }
                }
            }
            velocities[key] = velocity
        }
    }
}

extension Double {
    func power(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<exponent { result *= self }
        return result
    }
}
