import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia dynamics` on a run's checkpoints gives, at each step, what `myopia horizon` and
/// `myopia probe` give when run by hand on that checkpoint (on the run's validation split, with the
/// same settings), and the gap what `myopia eval` gives on the two twins.
final class DynamicsCLITests: CLITestCase {
    func numbers(_ value: Any?) -> [Double] {
        switch value {
        case let a as [Any]: return a.flatMap { numbers($0) }
        case let n as NSNumber: return [n.doubleValue]
        default: return []
        }
    }

    func assertClose(_ a: [Double], _ b: [Double], _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-12 * max(1, abs(y)), what) }
    }

    func testDynamicsEqualsHorizonAndProbeByHand() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        var text = ""
        for i in 0..<600 { text += ["the cat sat on the mat. ", "a dog ran to the park! ", "we read it twice, then slept. "][i % 3] + "\(i % 7) " }
        try Data(text.utf8).write(to: corpus)
        // The run's validation split (bytes: the last tenth), as a file the analyses read by hand.
        let bytes = Array(text.utf8)
        let validation = dir.appendingPathComponent("validation.txt")
        try Data(bytes[(bytes.count - Int((Double(bytes.count) * 0.1).rounded()))...]).write(to: validation)

        let gap = dir.appendingPathComponent("gap")
        let trained = try run(["gap", "--data", corpus.path, "--out", gap.path, "--seeds", "1", "--layers", "2", "--heads", "2",
                               "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "12", "--warmup", "2", "--lr", "0.003",
                               "--log-every", "1", "--eval-every", "6", "--eval-windows", "2", "--checkpoint-at", "log:3",
                               "--log-gradient-split", "4", "--quiet"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let vanilla = gap.appendingPathComponent("vanilla-seed1"), myopic = gap.appendingPathComponent("myopic-seed1")
        let r = try run(["dynamics", vanilla.path, "--eval-windows", "5", "--horizon-sequences", "3", "--probe-positions", "160",
                         "--batch", "4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let table = try json(r)
        XCTAssertEqual(table["twin"] as? String, myopic.path)
        let points = try XCTUnwrap(table["points"] as? [[String: Any]])
        XCTAssertEqual(points.compactMap { $0["step"] as? Int }, [1, 3, 12])
        for point in points {
            let step = try XCTUnwrap(point["step"] as? Int)
            let checkpoint = vanilla.appendingPathComponent("checkpoint-\(step)").path
            let horizon = try run(["horizon", "--model", checkpoint, "--data", validation.path, "--seq-len", "16", "--sequences", "3",
                                   "--batch", "4", "--json"])
            XCTAssertEqual(horizon.status, 0, horizon.stderr)
            assertClose(numbers(point["horizon_mean_offset"]), numbers(try json(horizon)["mean_offset"]), "horizon at step \(step)")
            let probe = try run(["probe", "--model", checkpoint, "--data", validation.path, "--seq-len", "16", "--offsets", "1",
                                 "--layers", "all", "--top", "64", "--positions", "160", "--batch", "4", "--json"])
            XCTAssertEqual(probe.status, 0, probe.stderr)
            let p = try XCTUnwrap(try json(probe)["probe"] as? [String: Any])
            let current = try XCTUnwrap(numbers(p["current_token_loss"]).first)
            assertClose(numbers(point["probe_gain"]), numbers(p["loss"]).map { current - $0 }, "probe gain at step \(step)")
            // The gap: eval of the twins on the same windows.
            var losses: [Double] = []
            for run in [vanilla, myopic] {
                let e = try self.run(["eval", "--model", run.appendingPathComponent("checkpoint-\(step)").path, "--data", validation.path,
                                      "--seq-len", "16", "--batch", "4", "--max-windows", "5", "--json"])
                XCTAssertEqual(e.status, 0, e.stderr)
                losses.append(try XCTUnwrap(try json(e)["loss"] as? Double))
            }
            assertClose(numbers(point["val_loss"]), [losses[0]], "loss at step \(step)")
            assertClose(numbers(point["gap"]), [losses[1] - losses[0]], "gap at step \(step)")
        }
    }
}
