import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class HorizonTableTests: XCTestCase {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/gpt2_tiny")

    struct Reference: Decodable { let mean_norm: [[Double]] }
    struct Tokens: Decodable { let tokens: [[Int32]] }

    /// The table for one sequence equals the one computed from torch.autograd's gradients.
    func testTableMatchesTorch() throws {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let tokens = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens[0]
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent("horizon_reference.json")))
        let table = Horizon.compute(model, tokens: Array(tokens.prefix(17)), seqLen: 16)
        XCTAssertEqual(table.sequences, 1)
        XCTAssertEqual(table.counts, (0..<16).map { 16 - $0 })
        for l in 0...3 {
            for k in 0..<16 {
                XCTAssertEqual(table.meanNorm[l][k], reference.mean_norm[l][k], accuracy: 1e-4 * reference.mean_norm[l][k] + 1e-9, "l \(l) k \(k)")
            }
            XCTAssertEqual(table.share[l].reduce(0, +), 1, accuracy: 1e-9)
        }
        // The final residual is read only by its own position's prediction.
        XCTAssertEqual(table.share[3][0], 1)
        XCTAssertEqual(table.meanOffset[3], 0)
        XCTAssertGreaterThan(table.meanOffset[0], 0)
    }

    func testMaxOffsetTableIsThePrefixOfTheFullOne() throws {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let rows = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens
        let tokens = rows.flatMap { $0.prefix(34) }   // 3 rows of 34 → windows of 17
        let full = Horizon.compute(model, tokens: tokens, seqLen: 16, batch: 2)
        let short = Horizon.compute(model, tokens: tokens, seqLen: 16, maxOffset: 4, batch: 2)
        XCTAssertEqual(short.meanNorm.map { Array($0) }, full.meanNorm.map { Array($0.prefix(5)) })
        XCTAssertEqual(short.counts, Array(full.counts.prefix(5)))
    }
}
