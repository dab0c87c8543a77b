import Foundation
import NormKitCore
import Testing

@Suite("Autodiff mechanics")
struct AutodiffTests {
    @Test func tensorUsedTwiceInOneOpGetsBothContributions() {
        let x = randomValues([4], seed: 140)
        let leaf = makeLeaf(x)
        (leaf.tensor * leaf.tensor).sum().backward()
        expectClose(leaf.node.gradient!, x.map { 2 * $0 }, relative: 1e-7, absolute: 0)
    }

    @Test func leafUsedInTwoBranchesAccumulatesBoth() {
        // y = Σ (eˣ + 3x)  ⇒  dy/dx = eˣ + 3
        let x = randomValues([2, 3], seed: 141)
        expectGradientsMatchFiniteDifferences(at: [x]) { t in t[0].exp() + t[0] * 3 } reference: { d in
            d[0].map { Foundation.exp($0) + 3 * $0 }
        }
    }

    @Test func diamondGraphSendsEachPathItsShare() {
        // a = 2x, b = a², c = a·b = 2x · 4x²  ⇒  dc/dx = 24x²; `a` is shared by two ops.
        let x = randomValues([3], in: 0.5...2, seed: 142)
        expectGradientsMatchFiniteDifferences(at: [x]) { t in
            let a = t[0] * 2
            return a * a.squared()
        } reference: { d in d[0].map { 8 * $0 * $0 * $0 } }
    }

    @Test func backwardWithASeedGradientWeightsEachOutput() {
        let leaf = makeLeaf(DoubleTensor([1, 2, 3], shape: [3]))
        (leaf.tensor * 2).backward(gradient: Tensor([1, 10, 100]))
        #expect(leaf.node.gradient?.scalars == [2, 20, 200])
    }

    @Test func backwardOfAScalarSeedsWithOne() {
        let leaf = makeLeaf(DoubleTensor([1, 2], shape: [2]))
        (leaf.tensor * 3).sum().backward()
        #expect(leaf.node.gradient?.scalars == [3, 3])
    }

    @Test func leafGradientsAccumulateOverBackwardPassesUntilCleared() {
        let leaf = makeLeaf(DoubleTensor([1, 2], shape: [2]))
        (leaf.tensor * 3).sum().backward()
        (leaf.tensor * 3).sum().backward()
        #expect(leaf.node.gradient?.scalars == [6, 6])
        leaf.node.clearGradient()
        #expect(leaf.node.gradient == nil)
        (leaf.tensor * 5).sum().backward()
        #expect(leaf.node.gradient?.scalars == [5, 5])
    }

    @Test func intermediateNodesDoNotKeepTheirGradients() {
        let leaf = makeLeaf(DoubleTensor([1, 2], shape: [2]))
        let hidden = leaf.tensor * 3
        hidden.sum().backward()
        #expect(hidden.gradientNode.map { !$0.isLeaf } == true)
        #expect(hidden.gradientNode?.gradient == nil)
        #expect(leaf.node.isLeaf)
        #expect(leaf.node.gradient != nil)
    }

    @Test func withoutRecordingProducesTensorsWithoutNodes() {
        let leaf = makeLeaf(DoubleTensor([1, 2], shape: [2]))
        #expect(Autodiff.isRecording)
        let (result, attached) = Autodiff.withoutRecording {
            #expect(!Autodiff.isRecording)
            return ((leaf.tensor * leaf.tensor).exp().sum(), Tensor([1]).attached(to: GradientNode()))
        }
        #expect(Autodiff.isRecording, "recording resumes after the block")
        #expect(result.gradientNode == nil)
        #expect(!result.requiresGradient)
        #expect(attached.gradientNode == nil, "attaching while not recording makes no leaf")
        expectClose([result.scalar], [Foundation.exp(1) + Foundation.exp(4)], relative: 1e-6, absolute: 0)
    }

    @Test func detachedValuesStopTheGradient() {
        // y = Σ x · stop(x)  ⇒  dy/dx = x, not 2x.
        let x = randomValues([3], seed: 143)
        let leaf = makeLeaf(x)
        let detached = leaf.tensor.detached()
        #expect(detached.gradientNode == nil)
        #expect(detached.scalars == leaf.tensor.scalars)
        (leaf.tensor * detached).sum().backward()
        expectClose(leaf.node.gradient!, x, relative: 0, absolute: 0)
    }

    @Test func opsOnConstantsRecordNothing() {
        let y = (Tensor([1, 2]) * Tensor([3, 4])).exp().sum()
        #expect(y.gradientNode == nil)
    }

    @Test func backwardWithSeedOnAConstantDoesNothing() {
        Tensor([1, 2]).backward(gradient: Tensor([1, 1]))   // must not crash
    }

    @Test func mutatingATensorDetachesItFromTheGraph() {
        let leaf = makeLeaf(DoubleTensor([1, 2], shape: [2]))
        var y = leaf.tensor * 2
        #expect(y.requiresGradient)
        y[0] = 5
        #expect(!y.requiresGradient)
    }

    @Test func opsRecordTheirNames() {
        let a = makeLeaf(randomValues([2, 2], seed: 144)).tensor
        #expect(a.matmul(a).gradientNode?.operation == "matmul")
        #expect((a + a).gradientNode?.operation == "add")
        #expect(a.softmax().gradientNode?.operation == "softmax")
        #expect(linear(a, weight: a, bias: nil).gradientNode?.operation == "linear")
    }

    @Test func longChainsBackPropagateWithoutRecursion() {
        let leaf = makeLeaf(DoubleTensor([1], shape: [1]))
        var y = leaf.tensor
        for _ in 0..<5_000 { y = y + 1 }
        y.sum().backward()
        #expect(leaf.node.gradient?.scalars == [1])
    }

    @Test func droppingAVeryDeepGraphDoesNotOverflowTheStack() async {
        // Run in a child process: if releasing the graph recursed once per node, the
        // overflow would take the whole test run down instead of failing this test.
        await #expect(processExitsWith: .success) {
            let node = GradientNode(leaf: "x")
            var y = Tensor([1]).attached(to: node)
            for _ in 0..<25_000 { y = y * 1 + 1 }
            y.backward(gradient: Tensor([1]))
            precondition(node.gradient?.scalars == [1])
            y = Tensor([0])   // the last reference to the 50 000-node graph goes here
        }
    }

    @Test func backwardOnANonScalarStops() async {
        await #expect(processExitsWith: .failure) {
            (Tensor([1, 2]).attached(to: GradientNode()) * 2).backward()
        }
    }
}
