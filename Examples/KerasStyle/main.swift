import NormKit

GlobalRandom.seed(0)
let data = try MNISTDataset.embeddedFashionMNIST()
_ = try runKerasStyleExample(train: data.train, test: data.test)
