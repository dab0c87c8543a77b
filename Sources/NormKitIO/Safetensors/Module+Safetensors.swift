import NormKitCore
import NormKitNN

extension SafetensorsFile {
    /// A file holding `state`: float entries as `floatType` (F32 by default, as
    /// PyTorch saves), integer entries as I64.
    public init(_ state: StateDict, floatType: SafetensorsDType = .f32, metadata: [String: String] = [:]) {
        self.init(tensors: state.mapValues { SafetensorsTensor($0, floatType: floatType) }, metadata: metadata)
    }

    /// Every tensor as a state-dict entry: float types as Float32 tensors, integer types as int64.
    public var stateDict: StateDict { tensors.mapValues(\.stateValue) }
}

extension Module {
    /// Saves `stateDict()` as a safetensors file, atomically, with PyTorch's names
    /// and layouts, so `safetensors.torch.load_file` + `load_state_dict` reads it
    /// into the equivalent PyTorch model.
    /// - Parameter floatType: F32 (default, exact), F64 (exact), F16 or BF16 (rounded to nearest even).
    public func save(to path: String, floatType: SafetensorsDType = .f32) throws(SafetensorsError) {
        try SafetensorsFile(stateDict(), floatType: floatType, metadata: ["format": "pt"]).write(to: path)
    }

    /// Loads a safetensors state dict (from NormKit or PyTorch) into the model.
    ///
    /// The file is validated completely before the model changes. Float tensors
    /// of any supported type are converted to Float32.
    /// - Throws: `SafetensorsError` for a bad file, `StateDictError` (listing every
    ///   missing, unexpected and mis-shaped key) when it does not fit the model.
    @discardableResult
    public func load(from path: String, strict: Bool = true) throws -> StateDictLoadReport {
        try loadStateDict(SafetensorsFile.read(path: path).stateDict, strict: strict)
    }
}
