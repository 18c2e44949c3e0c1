import Foundation
import Myopia

/// The data-parallel step's cost (`myopia bench --data-parallel`, under mpirun or not): a bench
/// configuration's global batch in S shards over the job's ranks, random tokens, AdamW and
/// clipping as a run takes them. Per step: the time, the part of it spent in the ordered shard sum
/// (copies, exchange, sums) and the bytes this rank handed MPI. Rank 0's figures are reported;
/// docs/distributed.md models larger jobs from them.
public enum DataParallelBench {
    public struct Figure: Codable, Sendable {
        public var config: String
        public var ranks: Int
        public var threadsPerRank: Int
        public var shards: Int
        public var batch: Int
        public var parameters: Int
        public var msPerStep: Double        // median
        public var reduceMs: Double         // median, of the same steps
        public var bytesPerStep: Int        // sent by this rank
        public var buckets: Int             // the gradient's buckets (0 for one process)
        public var bucketFloats: Int        // the most floats in one (MYOPIA_BUCKET_MB)
        public var overlap: Bool            // whether they start during backward (MYOPIA_OVERLAP)

        enum CodingKeys: String, CodingKey {
            case config, ranks, shards, batch, parameters, buckets, overlap
            case threadsPerRank = "threads_per_rank", msPerStep = "ms_per_step", reduceMs = "reduce_ms", bytesPerStep = "bytes_per_step"
            case bucketFloats = "bucket_floats"
        }
    }

    /// One warm-up step, then `steps` timed ones. Every rank of `group` must call it.
    public static func measure(_ bench: Bench.TrainingConfig, shards: Int, steps: Int, group: any ProcessGroup) throws -> Figure {
        let model = Transformer(config: bench.model)
        model.initialize(seed: 1)
        let step = DataParallelStep(model: model, batch: bench.batch, seqLen: bench.seqLen, shards: shards, group: group)
        var rng = SeededGenerator(seed: 7)
        let n = bench.batch * bench.seqLen
        let tokens = (0..<n).map { _ in Int32(rng.nextInt(below: bench.model.vocabSize)) }
        let targets = (0..<n).map { _ in Int32(rng.nextInt(below: bench.model.vocabSize)) }
        let trainingStep = TrainingStep(model: model, optimizer: AdamW(), clip: 1)
        var total: [Double] = [], reduce: [Double] = []
        for i in 0...steps {
            try tokens.withUnsafeBufferPointer { x in
                try targets.withUnsafeBufferPointer { y in
                    _ = try trainingStep.run(step: i + 1, lr: 1e-4, forward: {
                        step.gradient(inputs: x.baseAddress!, targets: y.baseAddress!)
                    }, backward: {})
                }
            }
            if i > 0 {
                let p = trainingStep.phases
                total.append(Double(p.end - p.start) / 1e6)
                reduce.append(1000 * step.sum.lastSeconds)
            }
        }
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        return Figure(config: bench.name, ranks: group.size, threadsPerRank: Parallel.threadCount, shards: shards, batch: bench.batch,
                      parameters: model.params.count, msPerStep: median(total), reduceMs: median(reduce),
                      bytesPerStep: step.sum.bytesPerStep, buckets: step.sum.buckets.count,
                      bucketFloats: Distributed.exchange.bucketFloats, overlap: step.overlapsBackward)
    }
}
