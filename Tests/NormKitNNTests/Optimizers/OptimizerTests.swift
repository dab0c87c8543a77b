// Adam and SGD against hand-written Double references of PyTorch's update
// rules (torch.optim.Adam, torch.optim.SGD), over several steps.

import NormKitCore
@testable import NormKitNN
import Testing

/// The test objective L(p) = Σ cᵢ·pᵢ² + dᵢ·pᵢ, whose gradient 2c⊙p + d changes
/// from step to step, so the optimizers' state (moments, momentum) matters.
struct Quadratic {
    let c: [Double] = [0.5, 1, 2, 0.25]
    let d: [Double] = [0.3, -0.7, 0.1, 1.5]

    func gradient(at p: [Double]) -> [Double] { p.indices.map { 2 * c[$0] * p[$0] + d[$0] } }

    /// Sets `parameter`'s gradient by building L from its tensor and calling backward.
    func backward(through parameter: Parameter) {
        let loss = (parameter.tensor.squared() * tensor(c)).sum() + (parameter.tensor * tensor(d)).sum()
        loss.backward()
    }
}

private let startingPoint: [Double] = [1.5, -0.5, 0.75, -2]

/// PyTorch's Adam for one parameter, in Double.
private struct ReferenceAdam {
    var learningRate = 0.1, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weightDecay = 0.0, amsgrad = false
    var m: [Double] = [], v: [Double] = [], vMax: [Double] = []
    var t = 0

    mutating func step(_ p: inout [Double], gradient: [Double]) {
        if m.isEmpty { m = p.map { _ in 0 }; v = m; vMax = m }
        t += 1
        for i in p.indices {
            let g = gradient[i] + weightDecay * p[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            vMax[i] = Swift.max(vMax[i], v[i])
            let mHat = m[i] / (1 - pow(beta1, t)), vHat = (amsgrad ? vMax[i] : v[i]) / (1 - pow(beta2, t))
            p[i] -= learningRate * mHat / (vHat.squareRoot() + epsilon)
        }
    }

    private func pow(_ x: Double, _ n: Int) -> Double { (0..<n).reduce(1) { value, _ in value * x } }
}

/// PyTorch's SGD for one parameter, in Double.
private struct ReferenceSGD {
    var learningRate: Double, momentum: Double, dampening = 0.0, weightDecay: Double, nesterov: Bool
    var buffer: [Double]?

    mutating func step(_ p: inout [Double], gradient: [Double]) {
        var direction = p.indices.map { gradient[$0] + weightDecay * p[$0] }
        if momentum != 0 {
            let updated = buffer.map { b in p.indices.map { momentum * b[$0] + (1 - dampening) * direction[$0] } } ?? direction
            buffer = updated
            direction = nesterov ? p.indices.map { direction[$0] + momentum * updated[$0] } : updated
        }
        for i in p.indices { p[i] -= learningRate * direction[i] }
    }
}

struct SGDCase: Sendable, CustomTestStringConvertible {
    let momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool
    var testDescription: String {
        "momentum \(momentum), dampening \(dampening), weightDecay \(weightDecay)\(nesterov ? ", nesterov" : "")"
    }

    init(momentum: Double, dampening: Double = 0, weightDecay: Double, nesterov: Bool) {
        (self.momentum, self.dampening, self.weightDecay, self.nesterov) = (momentum, dampening, weightDecay, nesterov)
    }

    static let all = [
        SGDCase(momentum: 0, weightDecay: 0, nesterov: false),
        SGDCase(momentum: 0, weightDecay: 0.1, nesterov: false),
        SGDCase(momentum: 0.9, weightDecay: 0, nesterov: false),
        SGDCase(momentum: 0.9, weightDecay: 0.1, nesterov: false),
        SGDCase(momentum: 0.9, weightDecay: 0, nesterov: true),
        SGDCase(momentum: 0.9, dampening: 0.5, weightDecay: 0.1, nesterov: false),
    ]
}

@Suite("Optimizers against PyTorch's update rules")
struct OptimizerTests {
    let objective = Quadratic()

    @Test("Adam follows PyTorch's update over 3 steps", arguments: [0.0, 0.1])
    func adamMatchesReference(weightDecay: Double) {
        let parameter = Parameter(tensor(startingPoint))
        let adam = Adam([parameter], learningRate: 0.1, weightDecay: Float(weightDecay))
        var reference = ReferenceAdam(weightDecay: weightDecay)
        var expected = startingPoint
        for step in 1...3 {
            adam.zeroGrad()
            objective.backward(through: parameter)
            expectClose(parameter.gradient, objective.gradient(at: doubles(parameter.value)), relative: 1e-6,
                        "gradient before step \(step)")
            adam.step()
            reference.step(&expected, gradient: objective.gradient(at: expected))
            expectClose(parameter.value.scalars, expected, relative: 1e-5, absolute: 1e-6, "after step \(step)")
        }
        #expect(adam.stepCount == 3)
    }

    @Test("Adam with amsgrad follows PyTorch's rule: the denominator keeps the largest v seen")
    func amsgradMatchesReference() {
        // A gradient that shrinks after the first step makes v fall below its maximum,
        // where AMSGrad and Adam part (β2 = 0.5 lets v fall fast): L = Σ wᵢ·pᵢ with w scaled by 1, 0.1, 0.1, …
        let weights: [Double] = [0.5, -2, 1, 3]
        let parameter = Parameter(tensor(startingPoint))
        let adam = Adam([parameter], learningRate: 0.1, beta2: 0.5, weightDecay: 0.1, amsgrad: true)
        var reference = ReferenceAdam(beta2: 0.5, weightDecay: 0.1, amsgrad: true)
        var plain = ReferenceAdam(beta2: 0.5, weightDecay: 0.1)
        var expected = startingPoint, expectedPlain = startingPoint
        for step in 1...4 {
            let scale = step == 1 ? 1.0 : 0.1
            let w = weights.map { $0 * scale }
            adam.zeroGrad()
            (parameter.tensor * tensor(w)).sum().backward()
            adam.step()
            reference.step(&expected, gradient: w)
            plain.step(&expectedPlain, gradient: w)
            expectClose(parameter.value.scalars, expected, relative: 1e-5, absolute: 1e-6, "after step \(step)")
        }
        // The case really separates the two rules.
        #expect(zip(expected, expectedPlain).contains { abs($0 - $1) > 1e-3 })
        let state = adam.stateDict(parameterNames: [ObjectIdentifier(parameter): "w"])
        expectClose(state["w.max_exp_avg_sq"]?.floatTensor, reference.vMax, relative: 1e-4,
                    "max_exp_avg_sq")
        // A restored optimizer keeps the maximum: its next step is the original's.
        let copy = Parameter(parameter.value)
        let restored = Adam([copy], learningRate: 0.1, beta2: 0.5, weightDecay: 0.1, amsgrad: true)
        #expect(throws: Never.self) { try restored.loadStateDict(state, parameters: ["w": copy]) }
        for (optimizer, p) in [(adam, parameter), (restored, copy)] {
            optimizer.zeroGrad()
            (p.tensor * tensor(weights.map { $0 * 0.1 })).sum().backward()
            optimizer.step()
        }
        #expect(copy.value.scalars == parameter.value.scalars)
    }

    @Test("Adam flushes moments that decay below Float's normal range to 0 (no subnormal arithmetic)",
          arguments: [false, true])
    func adamFlushesSubnormalMoments(amsgrad: Bool) {
        // One gradient of 1, then zeros: m = 0.1·0.9ᵏ falls below 1.18e-38 after ~820 steps.
        let parameter = Parameter(tensor([0.5]))
        let adam = Adam([parameter], learningRate: 1e-3, amsgrad: amsgrad)
        for step in 0..<900 {
            adam.zeroGrad()
            (parameter.tensor * tensor([step == 0 ? 1 : 0])).sum().backward()
            adam.step()
        }
        let state = adam.stateDict(parameterNames: [ObjectIdentifier(parameter): "p"])
        #expect(state["p.exp_avg"]?.floatTensor.scalars == [0])
    }

    @Test("Adam's vectorized update (16 lanes and a tail of 5) matches PyTorch's rule", arguments: [0.0, 0.1])
    func adamMatchesReferenceOnALongParameter(weightDecay: Double) {
        // 37 = 2·16 + 5 values; L = Σ wᵢ·pᵢ has the constant gradient w.
        let start = (0..<37).map { Double(Float(Double(($0 * 7) % 37) / 9 - 2)) }
        let weights = (0..<37).map { Double(Float(Double(($0 * 11) % 37) / 18 - 1)) }
        let parameter = Parameter(tensor(start))
        let adam = Adam([parameter], learningRate: 0.1, weightDecay: Float(weightDecay))
        var reference = ReferenceAdam(weightDecay: weightDecay)
        var expected = start
        for step in 1...3 {
            adam.zeroGrad()
            (parameter.tensor * tensor(weights)).sum().backward()
            adam.step()
            reference.step(&expected, gradient: weights)
            expectClose(parameter.value.scalars, expected, relative: 1e-5, absolute: 1e-6, "after step \(step)")
        }
    }

    @Test("Adam's bias correction counts each parameter's own updates, as PyTorch's per-parameter step does")
    func adamBiasCorrectionIsPerParameter() {
        let early = Parameter(tensor(startingPoint)), late = Parameter(tensor(startingPoint))
        let adam = Adam([early, late], learningRate: 0.1)
        var referenceEarly = ReferenceAdam(), referenceLate = ReferenceAdam()
        var expectedEarly = startingPoint, expectedLate = startingPoint
        for step in 1...4 {
            adam.zeroGrad()
            objective.backward(through: early)
            referenceEarly.step(&expectedEarly, gradient: objective.gradient(at: expectedEarly))
            // `late` gets no gradient (e.g. frozen or unused) in the first two steps.
            if step > 2 {
                objective.backward(through: late)
                referenceLate.step(&expectedLate, gradient: objective.gradient(at: expectedLate))
            }
            adam.step()
        }
        expectClose(early.value.scalars, expectedEarly, relative: 1e-5, absolute: 1e-6, "parameter updated from step 1")
        expectClose(late.value.scalars, expectedLate, relative: 1e-5, absolute: 1e-6, "parameter updated from step 3")
    }

    @Test("SGD follows PyTorch's update over 3 steps", arguments: SGDCase.all)
    func sgdMatchesReference(testCase: SGDCase) {
        let parameter = Parameter(tensor(startingPoint))
        let sgd = SGD([parameter], learningRate: 0.1, momentum: Float(testCase.momentum),
                      dampening: Float(testCase.dampening), weightDecay: Float(testCase.weightDecay),
                      nesterov: testCase.nesterov)
        var reference = ReferenceSGD(learningRate: 0.1, momentum: testCase.momentum, dampening: testCase.dampening,
                                     weightDecay: testCase.weightDecay, nesterov: testCase.nesterov)
        var expected = startingPoint
        for step in 1...3 {
            sgd.zeroGrad()
            objective.backward(through: parameter)
            sgd.step()
            reference.step(&expected, gradient: objective.gradient(at: expected))
            expectClose(parameter.value.scalars, expected, relative: 1e-5, absolute: 1e-6, "after step \(step)")
        }
    }

    @Test("SGD with momentum starts its buffer at the gradient: the first step equals plain SGD's")
    func momentumBufferStartsAtGradient() {
        let plain = Parameter(tensor(startingPoint)), heavy = Parameter(tensor(startingPoint))
        let plainSGD = SGD([plain], learningRate: 0.1)
        let momentumSGD = SGD([heavy], learningRate: 0.1, momentum: 0.9)
        objective.backward(through: plain)
        objective.backward(through: heavy)

        plainSGD.step()
        momentumSGD.step()

        let g = objective.gradient(at: startingPoint)
        let expected = startingPoint.indices.map { startingPoint[$0] - 0.1 * g[$0] }
        expectClose(heavy.value.scalars, expected, relative: 1e-6, "momentum SGD after one step")
        expectClose(plain.value.scalars, expected, relative: 1e-6, "plain SGD after one step")
    }

    @Test("zeroGrad forgets every parameter's gradient")
    func zeroGradClears() {
        let a = Parameter(tensor(startingPoint)), b = Parameter(tensor(startingPoint))
        let optimizer = SGD([a, b], learningRate: 0.1)
        objective.backward(through: a)
        objective.backward(through: b)
        #expect(a.gradient != nil && b.gradient != nil)

        optimizer.zeroGrad()

        #expect(a.gradient == nil)
        #expect(b.gradient == nil)
    }

    @Test("gradients accumulate across backward calls until zeroGrad")
    func gradientsAccumulate() {
        let parameter = Parameter(tensor(startingPoint))
        objective.backward(through: parameter)
        objective.backward(through: parameter)
        expectClose(parameter.gradient, objective.gradient(at: startingPoint).map { 2 * $0 }, relative: 1e-6)
    }

    @Test("frozen parameters are left exactly unchanged by Adam and SGD, even with a gradient present")
    func frozenParametersDoNotMove() {
        let optimizers: [(Parameter) -> any Optimizer] = [
            { Adam([$0], learningRate: 0.1) },
            { SGD([$0], learningRate: 0.1, momentum: 0.9) },
        ]
        for makeOptimizer in optimizers {
            let parameter = Parameter(tensor(startingPoint))
            let optimizer = makeOptimizer(parameter)
            objective.backward(through: parameter)
            #expect(parameter.gradient != nil)
            parameter.isTrainable = false
            let before = parameter.value.scalars

            optimizer.step()

            #expect(parameter.value.scalars == before, "\(type(of: optimizer))")
        }
    }

    @Test("a parameter frozen before the forward pass receives no gradient")
    func frozenParameterGetsNoGradient() {
        let frozen = Parameter(tensor(startingPoint), isTrainable: false)
        let trainable = Parameter(tensor(startingPoint))
        let loss = (frozen.tensor * trainable.tensor).sum()
        loss.backward()
        #expect(frozen.gradient == nil)
        expectClose(trainable.gradient, startingPoint, relative: 0, "d(Σ a·b)/db = a")
    }
}
