import NormKit

/// The seed program, Keras style: a `Sequential` built in place, `compile`, `fit`.
///
/// Keras' original:
/// ```python
/// model = keras.Sequential([keras.Input((784,)), layers.Dense(64), layers.BatchNormalization(),
///                           layers.ReLU(), layers.Dense(10), layers.Softmax()])
/// model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
///               metrics=["accuracy"])
/// model.fit(x_train, y_train, epochs=5, batch_size=32)
/// ```
/// Returns the test accuracy.
public func runKerasStyleExample(train: LabeledImages, test: LabeledImages, epochs: Int = 5) throws -> Double {
    let model = Sequential(inputShape: [784]) {
        Dense(64)
        BatchNormalization()      // Keras defaults: features last, momentum 0.99 (old value), ε 1e-3
        ReLU()
        Dense(10)
        Softmax()
    }
    model.compile(optimizer: Adam(learningRate: 0.001), loss: .sparseCategoricalCrossentropy, metrics: [.accuracy])
    try model.fit(train, epochs: epochs, batchSize: 32, validationData: test)

    let result = try model.evaluate(test)
    print("test_accuracy=\(fixed(result.accuracy, 4))")
    return result.accuracy
}
