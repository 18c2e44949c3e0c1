import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// The logit lens: its last layer at offset 0 is the model's own loss (`myopia eval`), every cell
/// is what a hand computation from the named residual streams gives, and on SmolLM2 it agrees with
/// transformers' losses.
final class LensTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// A byte stream (the GPT-2 vocabulary fixture's text) for the byte-level fixture models.
    func text(limit: Int, vocab: Int) throws -> [Int32] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("gpt2_vocab/text.txt"))
        return Array(data.prefix(limit)).map { Int32($0) % Int32(vocab) }
    }

    func testFinalLayerAtOffsetZeroIsTheEvalLoss() throws {
        for name in ["gpt2_tiny", "llama_tiny"] {
            let model = try Checkpoint.loadModel(from: fixtures.appendingPathComponent("\(name)/hf"))
            let tokens = try text(limit: 2000, vocab: model.config.vocabSize)
            let t = 15
            let eval = Evaluation.run(model, tokens: tokens, seqLen: t, batch: 4)
            let lens = LogitLens.compute(model, tokens: tokens, seqLen: t, offsets: [0, 1, 2], batch: 3)
            let last = lens.layers.firstIndex(of: model.config.nLayers)!
            XCTAssertEqual(lens.windows, eval.windows)
            XCTAssertEqual(lens.counts[0], eval.tokens)
            XCTAssertEqual(lens.loss[last][0], eval.loss, accuracy: 1e-6 * eval.loss, name)
            // The later offsets score one window's worth fewer only at the very end of the text.
            XCTAssertEqual(lens.counts[2], eval.tokens - max(0, (eval.windows * (t + 1) + 2) - tokens.count))
            XCTAssertEqual(lens.layers, Array(0...model.config.nLayers))
            XCTAssertGreaterThan(lens.unigramLoss[0], 0)
        }
    }

    /// Every cell against a direct computation: unembed the named residual stream in double and score
    /// the token i+1+k.
    func testCellsMatchAHandComputation() throws {
        let model = try Checkpoint.loadModel(from: fixtures.appendingPathComponent("gpt2_tiny/hf"))
        let t = 20, windows = 3, v = model.config.vocabSize, c = model.config.dModel
        let tokens = try text(limit: windows * (t + 1) + 5, vocab: v)
        let offsets = [0, 3]
        let lens = LogitLens.compute(model, tokens: tokens, seqLen: t, layers: [0, 2], offsets: offsets, batch: 2)
        var inputs = [Int32](repeating: 0, count: windows * t), targets = inputs
        TokenDataset.fillWindows(tokens, seqLen: t, first: 0, count: windows, inputs: &inputs, targets: &targets)
        let record = try model.runWithCache(tokens: inputs, batch: windows, seqLen: t,
                                            names: ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"])
        let gamma = Array(model.params.buffer(model.params.weights, model.params.entry("ln_f.weight")!))
        let beta = Array(model.params.buffer(model.params.weights, model.params.entry("ln_f.bias")!))
        let wte = Array(model.params.buffer(model.params.weights, model.params.entry("wte.weight")!))
        for (li, l) in [0, 2].enumerated() {
            let h = record["blocks.\(l).hook_resid_pre"]!.values
            for (j, k) in offsets.enumerated() {
                var loss = 0.0, hits = 0, count = 0
                for r in 0..<(windows * t) {
                    let index = (r / t) * (t + 1) + r % t + 1 + k
                    guard index < tokens.count else { continue }
                    let row = h[(r * c)..<((r + 1) * c)].map(Double.init)
                    let mean = row.reduce(0, +) / Double(c)
                    let inv = 1 / (row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c) + 1e-5).squareRoot()
                    let normed = (0..<c).map { (row[$0] - mean) * inv * Double(gamma[$0]) + Double(beta[$0]) }
                    let logits = (0..<v).map { y in (0..<c).reduce(0.0) { $0 + normed[$1] * Double(wte[y * c + $1]) } }
                    let top = logits.max()!
                    let logZ = top + Foundation.log(logits.reduce(0) { $0 + Foundation.exp($1 - top) })
                    loss += logZ - logits[Int(tokens[index])]
                    if logits.firstIndex(of: top)! == Int(tokens[index]) { hits += 1 }
                    count += 1
                }
                XCTAssertEqual(lens.counts[j], count)
                XCTAssertEqual(lens.loss[li][j], loss / Double(count), accuracy: 1e-5, "layer \(l) offset \(k)")
                XCTAssertEqual(lens.accuracy[li][j], Double(hits) / Double(count), accuracy: 1e-12, "layer \(l) offset \(k)")
            }
        }
    }
}
