import Benchmark
import NormKit

// NormKit's speed goals (issue 5), measured with ordo-one/benchmark.
// Names are "<group>/<work>/<shape>" so that `--filter` picks a group:
//   bn/…      batch-norm kernels (training forward, inference, backward) and
//   memcpy/…  the memory ceiling: copying the bytes inference moves (read N, write N floats)
//   sgemm/…   C = A·B with NormKit's own kernel and with the system OpenBLAS
//   threading/… what handing chunks to other threads costs: NormKit's worker pool
//             against DispatchQueue.concurrentPerform
//   step/…    one training step (forward, backward, Adam) of the seed MLP and the seed CNN;
//             malloc counts matter here: seed-mlp-fused is trainOnBatch on fit's fused step
//             (0 mallocs per step is the goal), seed-mlp-autodiff the general graph step
// Kernel benchmarks reuse their output buffers (as PyTorch does with a warm
// allocator): they measure the kernel, not page faults.

let benchmarks: @Sendable () -> Void = {
    let timed: [BenchmarkMetric] = [.wallClock, .cpuTotal, .mallocCountTotal, .throughput]
    let kernelConfiguration = Benchmark.Configuration(
        metrics: timed, timeUnits: .microseconds, warmupIterations: 3,
        maxDuration: .seconds(2), maxIterations: 1_000)
    let smallConfiguration = Benchmark.Configuration(
        metrics: timed, timeUnits: .nanoseconds, warmupIterations: 100, scalingFactor: .kilo,
        maxDuration: .seconds(1), maxIterations: 1_000)

    // MARK: batch norm
    for shape in BatchNormShape.all {
        let configuration = shape.elementCount < 1 << 16 ? smallConfiguration : kernelConfiguration
        let work = BatchNormWork(shape)
        Benchmark("bn/train-forward/\(shape.name)", configuration: configuration) { benchmark in
            for _ in benchmark.scaledIterations { work.trainingForward() }
        }
        Benchmark("bn/inference/\(shape.name)", configuration: configuration) { benchmark in
            for _ in benchmark.scaledIterations { work.inference() }
        }
        Benchmark("bn/backward/\(shape.name)", configuration: configuration) { benchmark in
            for _ in benchmark.scaledIterations { work.backward() }
        }
        // What the autodiff pullback runs when dy is not shared: dx over dy, one stream fewer.
        let inPlace = BatchNormWork(shape)
        inPlace.makeGainsUnit()
        Benchmark("bn/backward-in-place/\(shape.name)", configuration: configuration) { benchmark in
            for _ in benchmark.scaledIterations { inPlace.backwardInPlace() }
        }
        if shape.elementCount >= 1 << 16 && !shape.channelsLast {
            Benchmark("memcpy/\(shape.name.replacingOccurrences(of: "-nchw", with: ""))",
                      configuration: configuration) { benchmark in
                for _ in benchmark.scaledIterations { work.copy() }
            }
        }
    }

    // MARK: SGEMM
    for (m, k, n) in [(1024, 1024, 1024), (32, 784, 64), (256, 784, 64)] {
        let configuration = m * n * k < 1 << 24 ? smallConfiguration : kernelConfiguration
        let work = GEMMWork(m: m, k: k, n: n)
        for implementation in [SGEMMImplementation.native, .openBLAS] {
            if implementation == .openBLAS && !OpenBLAS.isAvailable { continue }
            let label = implementation == .native ? "native" : "openblas"
            Benchmark("sgemm/\(label)/\(m)x\(k)x\(n)", configuration: configuration) { benchmark in
                for _ in benchmark.scaledIterations { work.run(implementation) }
            }
        }
    }

    // MARK: threading
    let threading = ThreadingWork()
    Benchmark("threading/pool-empty", configuration: smallConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { threading.poolEmpty() }
    }
    Benchmark("threading/dispatch-empty", configuration: smallConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { threading.dispatchEmpty() }
    }
    Benchmark("threading/pool-handoff", configuration: smallConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { threading.poolHandoff() }
    }
    Benchmark("threading/dispatch-handoff", configuration: smallConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { threading.dispatchHandoff() }
    }

    // MARK: training steps
    let stepConfiguration = Benchmark.Configuration(
        metrics: timed + [.mallocCountSmall, .mallocCountLarge, .peakMemoryResident],
        timeUnits: .microseconds, warmupIterations: 20, maxDuration: .seconds(2), maxIterations: 5_000)
    // The harness reads /proc for CPU time and resident memory inside the measured
    // interval, which costs it ~16 mallocs of its own per iteration; without those
    // metrics the malloc count is the step's alone (an empty benchmark counts 0).
    let mallocConfiguration = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .mallocCountSmall, .mallocCountLarge],
        timeUnits: .microseconds, warmupIterations: 20, maxDuration: .seconds(2), maxIterations: 5_000)
    // The seed MLP's step as fit runs it (trainOnBatch: the fused step, buffers kept across calls)…
    let fusedSeedStep = TrainingStep.seedMLP(batchSize: 32)
    Benchmark("step/seed-mlp-fused/batch32", configuration: mallocConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { fusedSeedStep.trainOnBatch() }
    }
    // …and through the general autodiff graph, which every other model takes.
    let autodiffSeedStep = TrainingStep.seedMLP(batchSize: 32)
    Benchmark("step/seed-mlp-autodiff/batch32", configuration: mallocConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { autodiffSeedStep.run() }
    }
    // The convolutional network of issue 4 (PyTorch's torch_cnn.py trains it at batch 64).
    let cnnStep = TrainingStep.seedCNN(batchSize: 64)
    Benchmark("step/seed-cnn/batch64", configuration: stepConfiguration) { benchmark in
        for _ in benchmark.scaledIterations { cnnStep.run() }
    }
}
