// The umbrella module: `import NormKit` brings tensors and autodiff, layers,
// losses, optimizers, the training loop and the data readers.
@_exported import NormKitCore
@_exported import NormKitData
@_exported import NormKitNN
