import CMyopiaAllocCounter
import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// "No allocation in the step" under the consequence game: a training step with the continuation
/// passes and the policy term (prepare, backward adjusting the logit gradient) allocates nothing,
/// for GPT-2, Llama and Gemma 2 (soft-capped scores and logits, a sliding window) and both
/// estimators, on two threads and on one (counted as AllocationTests counts).
final class ConsequenceAllocationTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipIf(myopia_alloc_counter_available() == 0, "no allocation counter on this platform")
    }

    func testConsequenceStepAllocatesNothing() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        for family in [ModelConfig.Family.gpt2, .llama, .gemma2] {
            for estimator in ConsequenceEstimator.allCases {
                for threads in [2, 1] {
                    Parallel.threadCount = threads
                    XCTAssertEqual(stepAllocations(family: family, estimator: estimator), 0,
                                   "\(family), \(estimator), \(threads) thread(s)")
                }
            }
        }
    }

    /// Allocations over three game steps after two warm-up steps.
    func stepAllocations(family: ModelConfig.Family, estimator: ConsequenceEstimator) -> Int {
        let (b, t, v) = (4, 32, 64)
        var config = family == .gpt2
            ? ModelConfig(vocabSize: v, maxPositions: t, dModel: 64, nLayers: 2, nHeads: 4)
            : .llama(vocabSize: v, maxPositions: t, dModel: 64, nLayers: 2, nHeads: 4, nKVHeads: 2, dMLP: 160)
        if family == .gemma2 {
            config.family = .gemma2
            config.activation = "gelu_pytorch_tanh"
            config.tiedEmbeddings = true
            config.slidingWindow = 8
            config.slidingLayers = [true, false]
            config.attentionSoftcap = 50
            config.finalSoftcap = 30
        }
        let model = Transformer(config: config)
        model.initialize(seed: 1)
        let cache = model.makeCache(batch: b, seqLen: t)
        let tokens = (0..<(b * t)).map { Int32(($0 * 7 + 3) % v) }
        let targets = (0..<(b * t)).map { Int32(($0 * 11 + 5) % v) }
        let objective = ConsequenceObjective(model: model, batch: b, seqLen: t,
                                             settings: ConsequenceSettings(weight: 0.5, horizon: 4, positions: 3, estimator: estimator),
                                             random: KeyedRandom(seed: 2))
        let trainingStep = TrainingStep(model: model, optimizer: AdamW(), clip: 1)
        func step(_ i: Int) {
            try! trainingStep.run(step: i, lr: 1e-3, forward: {
                let loss = model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
                objective.prepare(cache: cache, step: i)
                return loss
            }, backward: {
                model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
            })
        }
        step(1)
        step(2)
        return AllocationTests.counter.count { for i in 3...5 { step(i) } }
    }
}
