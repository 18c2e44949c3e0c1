import CMyopiaAllocCounter
import Foundation
import MyopiaKernels
@testable import MyopiaTraining
import XCTest
import MyopiaTestSupport
import Myopia
import MyopiaLab

/// "No allocation in the step": a whole training step (forward with the loss, backward, gradient
/// clipping, the fused AdamW) allocates nothing, on any thread, for both families and every flow
/// with a code path of its own, on two threads and on one; nor does the trainer's loop between its
/// log steps. Counted by CMyopiaAllocCounter, which this test bundle links: it replaces malloc in
/// the process (release builds: `swift test -c release`; debug builds allocate where -O does not).
final class AllocationTests: XCTestCase {
    static let counter = AllocationCounter(setCounting: { myopia_alloc_counting($0 ? 1 : 0) },
                                           total: { Int(myopia_alloc_count()) })

    /// Where allocations made while counting go, so that the optimiser cannot drop them.
    var kept: [Any] = []

    override func setUpWithError() throws {
        #if canImport(Glibc)
        XCTAssertEqual(myopia_alloc_counter_available(), 1, "the counter replaces malloc wherever glibc does")
        #else
        try XCTSkipIf(myopia_alloc_counter_available() == 0, "no allocation counter on this platform")
        #endif
    }

    /// The counter sees what Swift, Foundation and pool workers allocate, and nothing else.
    func testCounterSeesAllocations() {
        let counter = Self.counter
        XCTAssertEqual(counter.count {}, 0)
        kept.reserveCapacity(8)
        XCTAssertGreaterThanOrEqual(counter.count { for i in 0..<3 { kept.append([Int](repeating: i, count: 100)) } }, 3)
        XCTAssertGreaterThanOrEqual(counter.count { kept.append(NSString(format: "%d tokens", 42)) }, 1)
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 2
        let buffers = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 2)
        defer { for i in 0..<2 { free(buffers[i]) }; buffers.deallocate() }
        Parallel.forEach(2, buffers) { buffers, i in buffers[i] = nil }  // starts the pool's worker
        let fromThreads = counter.count {
            Parallel.forEach(2, buffers) { buffers, i in buffers[i] = malloc(64) }
        }
        XCTAssertEqual(fromThreads, 2)
    }

    func testTrainingStepAllocatesNothing() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        for family in [ModelConfig.Family.gpt2, .llama] {
            for flow in [GradientFlow.vanilla, .myopic, .localMyopic] {
                for threads in [2, 1] {
                    Parallel.threadCount = threads
                    XCTAssertEqual(stepAllocations(family: family, flow: flow), 0, "\(family), \(flow), \(threads) thread(s)")
                }
            }
        }
        // The same count sees an allocation made inside it.
        XCTAssertGreaterThan(Self.counter.count { kept.append([Float](repeating: 1, count: 64)) }, 0)
    }

    /// Allocations over three training steps after two warm-up steps (AdamW's moments, scratch
    /// buffers, pool threads): the one `TrainingStep` that the trainer, the tasks and `Bench.sampleTrainingSteps` run. A small model, but large
    /// enough that every kernel splits its work (GEMMs past the parallel threshold, several AdamW
    /// chunks per matrix, several blocks of the gradient norm).
    func stepAllocations(family: ModelConfig.Family, flow: GradientFlow) -> Int {
        let (b, t) = (4, 32)
        let config = family == .gpt2
            ? ModelConfig(vocabSize: 256, maxPositions: t, dModel: 128, nLayers: 2, nHeads: 4)
            : .llama(vocabSize: 256, maxPositions: t, dModel: 128, nLayers: 2, nHeads: 4, nKVHeads: 2, dMLP: 320)
        let model = Transformer(config: config)
        model.initialize(seed: 1)
        if flow == .localMyopic { model.reference = model.copy() }
        model.flow = flow
        let cache = model.makeCache(batch: b, seqLen: t)
        let tokens = (0..<(b * t)).map { Int32(($0 * 7 + 3) % 256) }
        let targets = (0..<(b * t)).map { Int32(($0 * 11 + 5) % 256) }
        let trainingStep = TrainingStep(model: model, optimizer: AdamW(), clip: 1)
        func step(_ i: Int) {
            try! trainingStep.run(step: i, lr: 1e-3, cache: cache) {
                model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
            }
        }
        step(1)
        step(2)
        return Self.counter.count { for i in 3...5 { step(i) } }
    }

    /// The trainer's own loop (batches, the finiteness checks, the schedule) between log steps:
    /// counted from the hook of step 3 (after its backward) to the hook of step 6.
    func testTrainerLoopAllocatesNothingBetweenLogs() throws {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 2
        var c = TrainConfig()
        c.layers = 2; c.heads = 4; c.dModel = 64; c.seqLen = 32; c.batch = 4
        c.steps = 8; c.warmup = 2; c.evalWindows = 2
        c.logEvery = 8; c.evalEvery = 8; c.checkpointEvery = 8
        let text = String(repeating: "all the world's a stage, and all the men and women merely players. ", count: 12)
        let data = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.2, source: "inline")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-alloc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let trainer = try Trainer(config: c, dataset: data, out: dir)
        let counter = Self.counter
        var before = 0, allocations = -1
        trainer.faultHook = { step, _ in
            if step == 3 { before = counter.total; counter.start() }
            if step == 6 { counter.stop(); allocations = counter.total - before }
        }
        _ = try trainer.run()
        XCTAssertEqual(allocations, 0)
    }
}
