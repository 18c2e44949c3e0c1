import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// The data-parallel step without MPI: the shard plan, the ordered shard sum, and the step over 1, 2
/// and 3 ranks simulated by threads in one process (ThreadGroup below, the same collectives as MPI
/// gives), which must agree bit for bit; and the sharded gradient against the whole batch's.
final class DataParallelTests: XCTestCase {
    func testShardPlanSpreadsContiguousRunsOverTheRanks() {
        let plan = ShardPlan(shards: 4, ranks: 3)
        XCTAssertEqual((0..<3).map { plan.shards(of: $0) }, [0..<1, 1..<2, 2..<4])
        XCTAssertEqual((0..<4).map { plan.rank(of: $0) }, [0, 1, 2, 2])
        XCTAssertEqual(ShardPlan(shards: 5, ranks: 1).shards(of: 0), 0..<5)
        let spans = WindowSpans(batches: 5, batch: 4, windows: 18, ranks: 3)
        XCTAssertEqual((0..<3).map { spans.windows(of: $0) }, [0..<4, 4..<12, 12..<18])
    }

    /// One process: ((g0 + g1) + g2), written into the last shard's buffer; S = 1 leaves it alone.
    func testOneProcessFoldsInShardOrder() {
        let p = 1000
        var rng = SeededGenerator(seed: 3)
        let g = (0..<3).map { _ in (0..<p).map { _ in Float(rng.nextInt(below: 2001) - 1000) * 1.37e-3 } }
        let sum = OrderedShardSum(count: p, plan: ShardPlan(shards: 3, ranks: 1), group: SingleProcess())
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: p)
        defer { buffer.deallocate() }
        for i in 0..<3 {
            buffer.update(from: g[i], count: p)
            sum.deposit(i, buffer)
        }
        sum.finish(into: buffer)
        var leftFirst = [Float](repeating: 0, count: p), rightFirst = leftFirst
        for j in 0..<p {
            let a: Float = g[0][j], b: Float = g[1][j], c: Float = g[2][j]
            leftFirst[j] = (a + b) + c
            rightFirst[j] = a + (b + c)
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: buffer, count: p)), leftFirst)
        XCTAssertNotEqual(leftFirst, rightFirst, "the data should tell the two orders apart")
        let one = OrderedShardSum(count: p, plan: ShardPlan(shards: 1, ranks: 1), group: SingleProcess())
        buffer.update(from: g[2], count: p)
        one.deposit(0, buffer)
        one.finish(into: buffer)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: buffer, count: p)), g[2])
    }

    func model() -> Transformer {
        let m = Transformer(config: ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2, tokenizer: nil))
        m.initialize(seed: 5)
        return m
    }

    func batch(_ b: Int, _ t: Int) -> (inputs: [Int32], targets: [Int32]) {
        var rng = SeededGenerator(seed: 11)
        return ((0..<(b * t)).map { _ in Int32(rng.nextInt(below: 64)) }, (0..<(b * t)).map { _ in Int32(rng.nextInt(below: 64)) })
    }

    /// S = 4 shards on 1, 2 and 3 ranks (3: 1, 1 and 2 shards each): the same gradient and loss, bit for bit.
    func testSameBitsOnOneTwoAndThreeRanks() {
        let (b, t, s) = (8, 8, 4)
        let (x, y) = batch(b, t)
        var results: [[Float]] = [], losses: [Float] = []
        for n in 1...3 {
            let outcome = ThreadGroup.run(ranks: n) { group -> ([Float], Float) in
                let m = self.model()
                let step = DataParallelStep(model: m, batch: b, seqLen: t, shards: s, group: group)
                let loss = step.gradient(inputs: x, targets: y)
                return (m.params.gradArray(), loss)
            }
            for r in 1..<n {
                XCTAssertTrue(outcome[r].0 == outcome[0].0, "\(n) ranks: rank \(r)'s gradient differs from rank 0's")
                XCTAssertEqual(outcome[r].1, outcome[0].1)
            }
            results.append(outcome[0].0)
            losses.append(outcome[0].1)
        }
        XCTAssertTrue(results[1] == results[0], "2 ranks differ from one process")
        XCTAssertTrue(results[2] == results[0], "3 ranks differ from one process")
        XCTAssertEqual(losses[1], losses[0])
        XCTAssertEqual(losses[2], losses[0])
    }

    /// The shards' gradients add up to the whole batch's mean-loss gradient (to rounding).
    func testShardsAddUpToTheWholeBatchGradient() {
        let (b, t) = (8, 8)
        let (x, y) = batch(b, t)
        let whole = model()
        let cache = whole.makeCache(batch: b, seqLen: t)
        whole.params.zeroGrads()
        let loss = whole.forward(tokens: x, targets: y, batch: b, seqLen: t, cache: cache)!
        whole.backward(cache: cache)
        let expected = whole.params.gradArray()
        let sharded = model()
        let step = DataParallelStep(model: sharded, batch: b, seqLen: t, shards: 4, group: SingleProcess())
        let shardedLoss = x.withUnsafeBufferPointer { x in
            y.withUnsafeBufferPointer { y in step.gradient(inputs: x.baseAddress!, targets: y.baseAddress!) }
        }
        XCTAssertEqual(shardedLoss, loss, accuracy: 1e-5 * abs(loss))
        let got = sharded.params.gradArray()
        let scale = expected.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        for i in expected.indices { XCTAssertEqual(got[i], expected[i], accuracy: 1e-5 * scale, "element \(i)") }
    }

    /// A run with shards records them, trains, and repeats itself bit for bit.
    func testTrainerWithShardsRecordsThemAndRepeats() throws {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4; c.shards = 2
        c.steps = 4; c.warmup = 1; c.evalEvery = 4; c.evalWindows = 4; c.logEvery = 2; c.checkpointEvery = 4
        let text = TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                                      validationFraction: 0.2, source: "inline")
        var weights: [[Float]] = []
        for _ in 0..<2 {
            let out = try temporaryDirectory(self)
            let trainer = try Trainer(config: c, dataset: text, out: out)
            let last = try trainer.run()
            XCTAssertNotNil(last?.valLoss)
            XCTAssertEqual(last?.reduceBytes, 0)
            let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Trainer.runConfigFile))) as? [String: Any]
            XCTAssertEqual(recorded?["shards"] as? Int, 2)
            weights.append(trainer.model.params.weightArray())
        }
        XCTAssertTrue(weights[0] == weights[1])
        c.batch = 6; c.shards = 4
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("shards"), "\($0)") }
        c.batch = 4; c.game = .multiToken(heads: 2)
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("shards"), "\($0)") }
    }
}

extension DataParallelStep {
    func gradient(inputs: [Int32], targets: [Int32]) -> Float {
        inputs.withUnsafeBufferPointer { x in
            targets.withUnsafeBufferPointer { y in gradient(inputs: x.baseAddress!, targets: y.baseAddress!) }
        }
    }
}

/// N ranks as N threads of this process, with the collectives MPI gives (each a barrier-separated
/// exchange through shared slots): enough to run the data-parallel step as an MPI job would.
final class ThreadGroup: ProcessGroup, @unchecked Sendable {
    final class Shared: @unchecked Sendable {
        let size: Int
        let condition = NSCondition()
        var arrived = 0, generation = 0
        var raw: [UnsafeRawPointer?], counts: [UnsafePointer<Int32>?], offsets: [UnsafePointer<Int32>?]
        init(size: Int) {
            self.size = size
            raw = Array(repeating: nil, count: size)
            counts = Array(repeating: nil, count: size)
            offsets = Array(repeating: nil, count: size)
        }
        func barrier() {
            condition.lock()
            let g = generation
            arrived += 1
            if arrived == size {
                arrived = 0
                generation += 1
                condition.broadcast()
            } else {
                while generation == g { condition.wait() }
            }
            condition.unlock()
        }
    }

    let rank: Int
    let shared: Shared
    var size: Int { shared.size }
    var description: String { "\(size) threads" }

    init(rank: Int, shared: Shared) {
        self.rank = rank
        self.shared = shared
    }

    /// Runs `body` on `ranks` threads, each with its rank's group; their results in rank order.
    static func run<R>(ranks: Int, _ body: @escaping (ThreadGroup) -> R) -> [R] {
        let shared = Shared(size: ranks)
        let results = UnsafeMutablePointer<R?>.allocate(capacity: ranks)
        results.initialize(repeating: nil, count: ranks)
        defer { results.deinitialize(count: ranks); results.deallocate() }
        let done = DispatchGroup()
        for r in 0..<ranks {
            let thread = Thread { results[r] = body(ThreadGroup(rank: r, shared: shared)); done.leave() }
            thread.stackSize = 8 << 20
            done.enter()
            thread.start()
        }
        done.wait()
        return (0..<ranks).map { results[$0]! }
    }

    private func publish(_ pointer: UnsafeRawPointer, _ counts: UnsafePointer<Int32>? = nil, _ offsets: UnsafePointer<Int32>? = nil) {
        shared.raw[rank] = pointer
        shared.counts[rank] = counts
        shared.offsets[rank] = offsets
        shared.barrier()
    }

    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer) {
        publish(send)
        for q in 0..<size { (receive + q * count).copyMemory(from: shared.raw[q]!, byteCount: count) }
        shared.barrier()
    }

    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer,
                   counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        publish(send)
        for q in 0..<size { (receive + Int(offsets[q])).copyMemory(from: shared.raw[q]!, byteCount: Int(counts[q])) }
        shared.barrier()
    }

    func allToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                  into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>, receiveOffsets: UnsafePointer<Int32>) {
        publish(UnsafeRawPointer(send), sendCounts, sendOffsets)
        for q in 0..<size {
            let theirs = shared.raw[q]!.assumingMemoryBound(to: Float.self)
            (receive + Int(receiveOffsets[q])).update(from: theirs + Int(shared.offsets[q]![rank]), count: Int(receiveCounts[q]))
        }
        shared.barrier()
    }

    func allGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        publish(UnsafeRawPointer(buffer))
        for q in 0..<size where q != rank {
            let theirs = shared.raw[q]!.assumingMemoryBound(to: Float.self)
            (buffer + Int(offsets[q])).update(from: theirs + Int(offsets[q]), count: Int(counts[q]))
        }
        shared.barrier()
    }

    func abort(code: Int32) -> Never { fatalError("rank \(rank) aborted with \(code)") }
}
