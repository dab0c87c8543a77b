import KerasStyleExample
import NormKit
import PyTorchStyleExample
import Testing

/// Both seed programs run end to end on a small slice of the embedded data
/// and learn something: far above the 10 % of guessing after one epoch.
@Suite(.serialized) struct SeedProgramsTests {
    let data: MNISTDataset

    init() throws {
        let full = try MNISTDataset.embeddedFashionMNIST()
        data = MNISTDataset(train: full.train.prefix(2000), test: full.test.prefix(500))
    }

    @Test func kerasStyleProgramTrainsAboveChance() throws {
        GlobalRandom.seed(1)
        let accuracy = try runKerasStyleExample(train: data.train, test: data.test, epochs: 1)
        #expect(accuracy > 0.6)
    }

    @Test func pyTorchStyleProgramTrainsAboveChance() throws {
        GlobalRandom.seed(1)
        let accuracy = try runPyTorchStyleExample(train: data.train, test: data.test, epochs: 1)
        #expect(accuracy > 0.5)
    }
}
