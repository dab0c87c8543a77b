import NormKitCore

/// Group normalization (Wu & He 2018, https://arxiv.org/abs/1803.08494),
/// PyTorch's `nn.GroupNorm`.
///
/// Input (N, C, S…) of any rank ≥ 2 (channels-first; S… may be empty). The C
/// channels are split into `groupCount` groups of C/groupCount consecutive
/// channels; each (sample, group) is normalized by its own mean μ and biased
/// variance σ² over its C/groupCount·∏S values, then
/// y = γ[c]·(x − μ)/√(σ² + ε) + β[c] with one γ (`weight`) and β (`bias`)
/// per channel. The output has the input's shape. `groupCount` 1 normalizes
/// each sample over everything (LayerNorm over (C, S…) with per-channel
/// affine); `groupCount` = C is InstanceNorm with affine.
///
/// Statistics never cross the batch, so the result is the same in `.training`
/// and `.inference`, for any batch size: GroupNorm is the usual replacement
/// for batch norm when batches are tiny. As in PyTorch, a group of a single
/// value (C = groupCount and no S…) is not an error: its output is β.
/// Statistics are two-pass with Double accumulators and the variance is
/// clamped at 0; the forward is one autodiff node whose fused pullback keeps
/// only μ and 1/σ per (sample, group).
///
/// Parameter names follow PyTorch: `weight`, `bias`.
public final class GroupNorm: Module {
    public let groupCount: Int
    public let channelCount: Int
    public let epsilon: Float
    /// Whether γ and β exist and train.
    public let isAffine: Bool

    /// γ per channel. Initially 1.
    public private(set) var weight: Parameter?
    /// β per channel. Initially 0.
    public private(set) var bias: Parameter?

    /// - Parameters:
    ///   - groupCount: groups to split the channels into; must divide `channelCount`.
    ///   - channelCount: channels C on axis 1.
    ///   - epsilon: added to the variance before the square root; must be > 0.
    ///   - affine: whether per-channel γ and β exist and train.
    public init(groupCount: Int, channelCount: Int, epsilon: Float = 1e-5, affine: Bool = true) {
        precondition(groupCount > 0 && channelCount > 0,
                     "GroupNorm: groupCount and channelCount must be positive, got \(groupCount) and \(channelCount)")
        precondition(channelCount % groupCount == 0,
                     "GroupNorm: groupCount \(groupCount) must divide channelCount \(channelCount)")
        precondition(epsilon > 0, "GroupNorm: epsilon must be > 0, got \(epsilon)")
        self.groupCount = groupCount
        self.channelCount = channelCount
        self.epsilon = epsilon
        self.isAffine = affine
        if affine {
            weight = Parameter(.ones([channelCount]))
            bias = Parameter(.zeros([channelCount]))
        }
        super.init()
    }

    public override func build(inputShape: [Int]) -> [Int] {
        precondition(inputShape.count >= 2 && inputShape[1] == channelCount,
                     "\(description) expects input (batch, \(channelCount), …), got shape \(inputShape)")
        return inputShape
    }

    public override func forward(_ input: Tensor) throws -> Tensor {
        _ = build(inputShape: input.shape)
        let layout = GroupNormLayout.groupNorm(shape: input.shape, groupCount: groupCount)
        return groupNorm(input, layout: layout, gamma: weight?.tensor, beta: bias?.tensor, epsilon: epsilon).output
    }

    public override var description: String {
        "GroupNorm(\(groupCount) groups, \(channelCount) channels, epsilon: \(epsilon)\(isAffine ? "" : ", affine: false"))"
    }
}
