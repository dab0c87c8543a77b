import NormKit

/// The seed program, PyTorch style: a custom model with `fc1`, `bn`, `fc2`
/// and a `forward`, trained by a hand-written loop.
///
/// Like the textbook version it applies softmax in `forward` and then uses a
/// cross-entropy that applies softmax again; NormKit prints a warning naming
/// the fix (return the logits, or use `SparseCategoricalCrossentropy`).
public final class Net: Module {
    let fc1 = Linear(784, 64)
    let bn = BatchNorm1d(64)
    let fc2 = Linear(64, 10)

    public override func forward(_ x: Tensor) throws -> Tensor {
        let hidden = relu(try bn(fc1(x)))
        return try fc2(hidden).softmax()
    }
}

/// Trains `Net` for `epochs` and returns its test accuracy.
public func runPyTorchStyleExample(train: LabeledImages, test: LabeledImages, epochs: Int = 5) throws -> Double {
    let model = Net()
    let criterion = CrossEntropyLoss()
    let optimizer = Adam(model.parameters(), lr: 0.001)
    let loader = DataLoader(train, batchSize: 32, shuffle: true, dropsLastPartialBatch: true)

    for epoch in 1...epochs {
        model.train()
        var runningLoss: Float = 0
        for (inputs, labels) in loader {
            optimizer.zeroGrad()
            let outputs = try model(inputs)
            let loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            runningLoss += loss.scalar
        }
        print("epoch \(epoch): loss \(fixed(Double(runningLoss) / Double(loader.batchCount), 4))")
    }

    model.eval()
    var correct = 0
    try Autodiff.withoutRecording {
        for (inputs, labels) in DataLoader(test, batchSize: 1000) {
            let predicted = try model(inputs).argmax(axis: 1)
            correct += zip(predicted, labels).filter { $0 == $1 }.count
        }
    }
    let accuracy = Double(correct) / Double(test.count)
    print("test_accuracy=\(fixed(accuracy, 4))")
    return accuracy
}
