import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaFormats
@testable import MyopiaSupport

final class SHA256Tests: XCTestCase {
    // FIPS 180-4 / NIST CAVP example vectors.
    func testNISTVectors() {
        XCTAssertEqual(SHA256.hash(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hash(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hash(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hash(Data(repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testStreamingMatchesOneShotAtEveryBlockBoundary() {
        var bytes = [UInt8]()
        for i in 0..<300 { bytes.append(UInt8(truncatingIfNeeded: i &* 31 &+ 7)) }
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300] {
            let whole = SHA256.hash(Data(bytes[0..<length]))
            for split in Set([0, 1, length / 3, length / 2, max(0, length - 1), length]) where split <= length {
                var h = SHA256()
                h.update(Data(bytes[0..<split]))
                h.update(Data(bytes[split..<length]))
                XCTAssertEqual(h.hexDigest(), whole, "length \(length) split \(split)")
            }
        }
        // 1,000,000 × 'a' fed in odd-sized pieces.
        var h = SHA256()
        var fed = 0
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 997)
        while fed < 1_000_000 {
            let n = min(chunk.count, 1_000_000 - fed)
            chunk.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            fed += n
        }
        XCTAssertEqual(SHA256.hex(h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        XCTAssertEqual(h.finalize().count, 32)
    }

    func testHashOfFileStreams() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-sha-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        let data = Data((0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) })
        try AtomicFile.write(data, to: url)
        XCTAssertEqual(try SHA256.hash(fileAt: url), SHA256.hash(data))
        XCTAssertThrowsError(try SHA256.hash(fileAt: url.appendingPathExtension("missing"))) { error in
            guard case InputError.io(let file, _)? = error as? InputError else { return XCTFail("\(error)") }
            XCTAssertTrue(file.hasSuffix(".missing"))
        }
    }
}
