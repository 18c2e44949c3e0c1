import Foundation
import XCTest
import MyopiaTestSupport

/// `--budget` reads alike in `demo` and `reproduce`: bare seconds, or 30m / 2h; anything else is a
/// usage error naming the flag. `reproduce` refuses a budget below its smallest plan and an unknown
/// paper before any work.
final class BudgetCLITests: CLITestCase {
    func testBudgetsTakeSecondsMinutesAndHours() throws {
        for bad in ["2x", "0", "-5m", "h"] {
            for command in [["demo"], ["reproduce", "wu2024"]] {
                let r = try run(command + ["--budget", bad, "--out", "/nonexistent-dir/x"])
                XCTAssertNotEqual(r.status, 0, "\(command) --budget \(bad)")
                XCTAssertTrue(r.stderr.contains("--budget"), r.stderr)
            }
        }
        let short = try run(["reproduce", "wu2024", "--budget", "20m"])
        XCTAssertNotEqual(short.status, 0)
        XCTAssertTrue(short.stderr.contains("below the smallest plan (30m)"), short.stderr)
        XCTAssertTrue(try run(["reproduce", "wu2024", "--budget", "1799"]).stderr.contains("below the smallest plan"))
        let paper = try run(["reproduce", "wu2023"])
        XCTAssertTrue(paper.stderr.contains("unknown paper 'wu2023'; known: wu2024"), paper.stderr)
        // Accepted budgets get as far as the output folder, which is checked before any work.
        let dir = try temporaryDirectory()
        let blocker = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        for good in ["30m", "2h", "7200", "8h"] {
            let r = try run(["reproduce", "wu2024", "--budget", good, "--out", blocker.appendingPathComponent("out").path])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(blocker.path), r.stderr)
            XCTAssertFalse(r.stderr.contains("--budget"), r.stderr)
        }
        let demo = try run(["demo", "--budget", "2h", "--out", blocker.appendingPathComponent("out").path])
        XCTAssertNotEqual(demo.status, 0)
        XCTAssertFalse(demo.stderr.contains("--budget"), demo.stderr)
    }
}
