import XCTest
import Myopia
@testable import MyopiaLab

final class LabTests: XCTestCase {
    /// The FLOP count `myopia bench` divides by is the one the speed targets are stated in.
    func testSmallStepFLOPs() {
        let s = Bench.small
        let config = ModelConfig(vocabSize: s.vocab, maxPositions: s.seqLen, dModel: s.dModel, nLayers: s.layers, nHeads: s.heads)
        XCTAssertEqual(Bench.trainingFLOPs(config, batch: s.batch, seqLen: s.seqLen) / 1e9, 70.9, accuracy: 0.1)
    }

    func testSyntheticTextIsSeeded() {
        XCTAssertEqual(SyntheticText.generate(bytes: 500, seed: 3), SyntheticText.generate(bytes: 500, seed: 3))
        XCTAssertNotEqual(SyntheticText.generate(bytes: 500, seed: 3), SyntheticText.generate(bytes: 500, seed: 4))
        XCTAssertGreaterThanOrEqual(SyntheticText.generate(bytes: 500, seed: 3).utf8.count, 500)
    }
}
