import NormKit

GlobalRandom.seed(0)
let data = try MNISTDataset.embeddedFashionMNIST()
_ = try runPyTorchStyleExample(train: data.train, test: data.test)
