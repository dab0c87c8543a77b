// The umbrella module: `import NormKit` brings tensors and autodiff, layers,
// losses, optimizers, the training loop, the data readers and model files.
@_exported import NormKitCore
@_exported import NormKitData
@_exported import NormKitIO
@_exported import NormKitNN
