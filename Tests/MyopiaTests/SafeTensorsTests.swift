import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

final class SafeTensorsTests: XCTestCase {
    private var tempDir: URL!

    override func setUpWithError() throws {
        tempDir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tempDir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tempDir)
    }

    private static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    // MARK: - Round trip

    private func sampleTensors() -> [SafeTensorsWriter.Tensor] {
        var w = [Float](repeating: 0, count: 4 * 6)
        for i in w.indices { w[i] = Float(i) * 0.25 - 3 }
        return [
            .init(name: "wte.weight", shape: [4, 6], data: w),
            .init(name: "h.0.ln_1.bias", shape: [6], data: [1, -1, .infinity, -.infinity, .leastNonzeroMagnitude, -0.0]),
            .init(name: "scalar", shape: [], data: [42]),
            .init(name: "empty", shape: [0, 5], data: []),
            .init(name: "nan \"quoted\" \\ name\n", shape: [1], data: [.nan]),
        ]
    }

    func testRoundTripIsExactAlignedAndDeterministic() throws {
        let tensors = sampleTensors()
        let metadata = ["format": "pt", "myopia.step": "120", "note": "é \"q\" \\ \n"]
        let url = tempDir.appendingPathComponent("model.safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)

        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(file.entries.map(\.name), tensors.map(\.name))
        XCTAssertEqual(file.headerByteCount % 8, 0)
        for t in tensors {
            let entry = try XCTUnwrap(file[t.name])
            XCTAssertEqual(entry.dtype, .f32)
            XCTAssertEqual(entry.shape, t.shape)
            XCTAssertEqual(entry.byteRange.lowerBound % 4, 0)
            XCTAssertEqual(try file.floats(t.name).map(\.bitPattern), t.data.map(\.bitPattern), t.name)
        }

        // Deterministic: same input, same bytes, in memory and on disk.
        let first = try Data(contentsOf: url)
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        XCTAssertEqual(try Data(contentsOf: url), first)
        XCTAssertEqual(try SafeTensorsWriter.encode(tensors, metadata: metadata), first)
        // No temporary files left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tempDir.path), ["model.safetensors"])
    }

    func testBufferOverloadWritesViewsOfAFlatBuffer() throws {
        var flat = [Float](repeating: 0, count: 10)
        for i in flat.indices { flat[i] = Float(i) }
        let url = tempDir.appendingPathComponent("flat.safetensors")
        try flat.withUnsafeBufferPointer { buf in
            try SafeTensorsWriter.write([
                (name: "a", shape: [2, 3], data: UnsafeBufferPointer(rebasing: buf[0..<6])),
                (name: "b", shape: [4], data: UnsafeBufferPointer(rebasing: buf[6..<10])),
            ], to: url)
        }
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(try file.floats("a"), [0, 1, 2, 3, 4, 5])
        var b = [Float](repeating: 0, count: 4)
        try b.withUnsafeMutableBufferPointer { try file.copyFloats("b", into: $0) }
        XCTAssertEqual(b, [6, 7, 8, 9])
        var wrong = [Float](repeating: 0, count: 3)
        assertInputError(try wrong.withUnsafeMutableBufferPointer { try file.copyFloats("b", into: $0) }, "invalidValue", field: "tensor \"b\"")
        assertInputError(try file.floats("nope"), "missing", field: "tensor \"nope\"")
    }

    func testWriterRejectsBadInputAndKeepsOldFile() throws {
        let url = tempDir.appendingPathComponent("keep.safetensors")
        try SafeTensorsWriter.write([.init(name: "x", shape: [1], data: [1])], to: url)
        let before = try Data(contentsOf: url)
        assertInputError(try SafeTensorsWriter.write([.init(name: "x", shape: [2], data: [1])], to: url), "invalidValue", field: "tensor \"x\" shape")
        assertInputError(try SafeTensorsWriter.write([.init(name: "x", shape: [1], data: [1]), .init(name: "x", shape: [1], data: [2])], to: url), "invalidValue", field: "tensor \"x\"")
        assertInputError(try SafeTensorsWriter.write([.init(name: "x", shape: [-1], data: [])], to: url), "invalidValue", field: "shape")
        struct Interrupted: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: url) { w in try w.write([1, 2, 3]); throw Interrupted() }) { XCTAssertTrue($0 is Interrupted) }
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tempDir.path), ["keep.safetensors"])
        assertInputError(try AtomicFile.write(Data([1]), to: tempDir.appendingPathComponent("no/such/dir/f")), "io", field: nil)
    }

    // MARK: - Reading files written by Python safetensors

    // Fixtures/safetensors/python_mixed.safetensors was written by safetensors 0.8.0
    // (`safetensors.torch.save_file`, metadata {"format": "pt", "note": "myopia fixture é"}) from:
    //   f32 [[0, 1, -2.5], [3.25, 1e-3, -1e30]]; empty: F32 zeros [0, 3];
    //   f16 = the half bit patterns 3C00 C000 7BFF 0400 0001 03FF 7C00 FC00 8000 2E66 7E00 3555;
    //   bf16 = the bfloat16 bit patterns 3F80 C060 7F7F 3DCD 0001 FF80 7FC0;
    //   i64 [1, -2, 2**40]; i32 [[7], [-9]]; u8 [0, 255].
    // The expected fp32 bits below are numpy's float16 -> float32 conversion of the same values.

    func testReadsPythonFileWithEveryDType() throws {
        let file = try SafeTensorsFile(contentsOf: Self.fixtures.appendingPathComponent("safetensors/python_mixed.safetensors"))
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "myopia fixture é"])
        XCTAssertEqual(file.entries.map(\.name), ["i64", "empty", "f32", "i32", "bf16", "f16", "u8"])
        XCTAssertEqual(try file.floats("f32"), [0, 1, -2.5, 3.25, 1e-3, -1e30])
        XCTAssertEqual(file["f32"]?.shape, [2, 3])
        XCTAssertEqual(try file.floats("empty"), [])
        XCTAssertEqual(try file.floats("f16").map(\.bitPattern), [
            0x3f80_0000, 0xc000_0000, 0x477f_e000, 0x3880_0000, 0x3380_0000, 0x387f_c000,
            0x7f80_0000, 0xff80_0000, 0x8000_0000, 0x3dcc_c000, 0x7fc0_0000, 0x3eaa_a000])
        XCTAssertEqual(try file.floats("bf16").map(\.bitPattern), [
            0x3f80_0000, 0xc060_0000, 0x7f7f_0000, 0x3dcd_0000, 0x0001_0000, 0xff80_0000, 0x7fc0_0000])
        XCTAssertEqual(try file.int64s("i64"), [1, -2, 1 << 40])
        XCTAssertEqual(try file.int32s("i32"), [7, -9])
        XCTAssertEqual(try file.int64s("u8"), [0, 255])
        assertInputError(try file.int32s("i64"), "invalidValue", field: "tensor \"i64\" element 2")
        assertInputError(try file.floats("i64"), "unsupported", field: "tensor \"i64\" dtype")
        assertInputError(try file.int64s("f32"), "unsupported", field: "tensor \"f32\" dtype")
    }

    // MARK: - Half / bfloat16 bit conversion

    func testHalfConversionKnownBits() {
        let cases: [(UInt16, UInt32)] = [
            (0x3C00, 0x3F80_0000), (0xC000, 0xC000_0000), (0x7BFF, 0x477F_E000), // 1, -2, 65504
            (0x0400, 0x3880_0000), (0x0001, 0x3380_0000), (0x03FF, 0x387F_C000), // min normal, min/max subnormal
            (0x8001, 0xB380_0000), (0x0000, 0x0000_0000), (0x8000, 0x8000_0000),
            (0x7C00, 0x7F80_0000), (0xFC00, 0xFF80_0000), (0x7E00, 0x7FC0_0000), (0x3555, 0x3EAA_A000),
        ]
        for (h, f) in cases {
            XCTAssertEqual(HalfFloat.float(fromHalfBits: h).bitPattern, f, "half 0x\(String(h, radix: 16))")
            XCTAssertEqual(HalfFloat.halfBits(from: Float(bitPattern: f)), h)
        }
        // Every half value survives half -> float -> half.
        for h in 0...UInt16.max {
            let f = HalfFloat.float(fromHalfBits: h)
            if f.isNaN { XCTAssertTrue(HalfFloat.float(fromHalfBits: HalfFloat.halfBits(from: f)).isNaN); continue }
            if HalfFloat.halfBits(from: f) != h { XCTFail("round trip of 0x\(String(h, radix: 16))"); break }
        }
        // Rounding to nearest even, overflow and underflow.
        XCTAssertEqual(HalfFloat.halfBits(from: 65519), 0x7BFF)
        XCTAssertEqual(HalfFloat.halfBits(from: 65520), 0x7C00)
        XCTAssertEqual(HalfFloat.halfBits(from: 1e10), 0x7C00)
        XCTAssertEqual(HalfFloat.halfBits(from: 1 + 0x1p-11), 0x3C00)       // tie -> even
        XCTAssertEqual(HalfFloat.halfBits(from: 1 + 3 * 0x1p-11), 0x3C02)   // tie -> even (up)
        XCTAssertEqual(HalfFloat.halfBits(from: 0x1p-25), 0x0000)           // tie -> even (zero)
        XCTAssertEqual(HalfFloat.halfBits(from: 0x1.8p-25), 0x0001)
        XCTAssertEqual(HalfFloat.halfBits(from: 0x1p-30), 0x0000)
        XCTAssertEqual(HalfFloat.halfBits(from: -0x1p-30), 0x8000)
        XCTAssertEqual(HalfFloat.halfBits(from: 0x1.ff8p-15), 0x03FF)       // largest subnormal, exact
        XCTAssertEqual(HalfFloat.halfBits(from: 0x1.ffcp-15), 0x0400)       // tie rounds up to min normal
    }

    /// Every binary16 pattern against the definition, computed exactly in Double: subnormals
    /// m·2⁻²⁴, normals (1024 + m)·2^(e−25), ±0, ±inf, and NaNs with their payload kept.
    func testHalfConversionOfEveryPatternIsExact() {
        for h in 0...UInt16.max {
            let sign: Double = h & 0x8000 == 0 ? 1 : -1
            let e = Int(h >> 10) & 0x1F, m = Int(h & 0x3FF)
            let got = HalfFloat.float(fromHalfBits: h).bitPattern
            let want: UInt32
            switch e {
            case 0x1F: want = UInt32(h & 0x8000) << 16 | 0x7F80_0000 | UInt32(m) << 13
            case 0: want = Float(sign * Double(m) * 0x1p-24).bitPattern
            default: want = Float(sign * Double(1024 + m) * pow(2, Double(e - 25))).bitPattern
            }
            if got != want { return XCTFail("half 0x\(String(h, radix: 16)): 0x\(String(got, radix: 16)), expected 0x\(String(want, radix: 16))") }
        }
        XCTAssertEqual(HalfFloat.float(fromHalfBits: 0x7C01).bitPattern, 0x7F80_2000)   // signalling NaN, payload kept
        XCTAssertEqual(HalfFloat.float(fromHalfBits: 0x8001).bitPattern, 0xB380_0000)   // -2⁻²⁴
    }

    /// bfloat16 is the high half of an fp32: every pattern converts to exactly that, and back.
    func testBFloat16ConversionOfEveryPatternIsExact() {
        for b in 0...UInt16.max {
            let f = HalfFloat.float(fromBFloat16Bits: b)
            if f.bitPattern != UInt32(b) << 16 { return XCTFail("bf16 0x\(String(b, radix: 16))") }
            if !f.isNaN, HalfFloat.bfloat16Bits(from: f) != b { return XCTFail("bf16 round trip 0x\(String(b, radix: 16))") }
        }
        // Subnormal, ±0, ±inf and a NaN, as a file holds them.
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x0001), Float(bitPattern: 0x0001_0000))
        XCTAssertTrue(HalfFloat.float(fromBFloat16Bits: 0x0001).isSubnormal)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x8000).bitPattern, 0x8000_0000)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x7F80), .infinity)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0xFF80), -.infinity)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x7FC1).bitPattern, 0x7FC1_0000)
    }

    func testBFloat16ConversionKnownBits() {
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x3F80), 1)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0xC060), -3.5)
        XCTAssertEqual(HalfFloat.float(fromBFloat16Bits: 0x0001).bitPattern, 0x0001_0000)
        XCTAssertTrue(HalfFloat.float(fromBFloat16Bits: 0x7FC1).isNaN)
        XCTAssertEqual(HalfFloat.bfloat16Bits(from: 1), 0x3F80)
        XCTAssertEqual(HalfFloat.bfloat16Bits(from: Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie -> even
        XCTAssertEqual(HalfFloat.bfloat16Bits(from: Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie -> even (up)
        XCTAssertEqual(HalfFloat.bfloat16Bits(from: Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(HalfFloat.bfloat16Bits(from: .greatestFiniteMagnitude), 0x7F80)
        XCTAssertTrue(HalfFloat.float(fromBFloat16Bits: HalfFloat.bfloat16Bits(from: .nan)).isNaN)
    }

    // MARK: - Malformed files: each gets its specific typed error

    /// A file with the given header text and data bytes; `length` overrides the header length.
    private func file(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        return file(bytes: h, data: data, length: length)
    }

    private func file(bytes h: [UInt8], data: [UInt8] = [], length: UInt64? = nil) -> Data {
        var out = Data()
        withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    private func parse(_ data: Data) throws -> SafeTensorsFile { try SafeTensorsFile(data: data, source: "bad.safetensors") }

    private let eight = [UInt8](repeating: 0, count: 8)

    func testFileShorterThanEightBytes() {
        assertInputError(try parse(Data([1, 2, 3])), "truncated", field: "header length")
        assertInputError(try parse(Data()), "truncated", field: "header length")
    }

    func testHeaderLengthPastEndOfFile() {
        assertInputError(try parse(file("{}", length: 1000)), "truncated", field: "header")
    }

    func testHeaderLengthAbsurdlyHuge() {
        assertInputError(try parse(file("{}", length: UInt64.max)), "invalidValue", field: "header length")
        assertInputError(try parse(file("{}", length: 1 << 40)), "invalidValue", field: "header length")
    }

    func testHeaderNotUTF8OrNotJSON() {
        assertInputError(try parse(file(bytes: [0x7B, 0xFF, 0xFE, 0x7D])), "invalidHeader", field: "header", reason: "UTF-8")
        assertInputError(try parse(file("{\"a\":")), "invalidHeader", field: "header", reason: "invalid JSON")
        assertInputError(try parse(file("{\"a\":1,}")), "invalidHeader", field: "header", reason: "invalid JSON")
        assertInputError(try parse(file("{} x")), "invalidHeader", field: "header", reason: "after the end")
        assertInputError(try parse(file("")), "invalidHeader", field: "header", reason: "invalid JSON")
        assertInputError(try parse(file(String(repeating: "[", count: 100_000))), "invalidHeader", field: "header", reason: "nested")
    }

    func testHeaderNotAnObject() {
        assertInputError(try parse(file("[1, 2]")), "invalidHeader", field: "header", reason: "expected a JSON object")
        assertInputError(try parse(file("{\"w\": [1]}")), "invalidValue", field: "tensor \"w\"")
    }

    func testMissingFields() {
        assertInputError(try parse(file(#"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, data: eight)), "missing", field: "tensor \"w\" dtype")
        assertInputError(try parse(file(#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, data: eight)), "missing", field: "tensor \"w\" shape")
        assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":[2]}}"#, data: eight)), "missing", field: "tensor \"w\" data_offsets")
    }

    func testUnknownDType() {
        assertInputError(try parse(file(#"{"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}"#, data: eight)), "unsupported", field: "tensor \"w\" dtype")
        assertInputError(try parse(file(#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: eight)), "invalidValue", field: "tensor \"w\" dtype")
    }

    func testBadShape() {
        for shape in ["[-2]", "[1.5]", "[2e0]", "[\"2\"]", "2", "[99999999999999999999]", "[4611686018427387904, 4611686018427387904]"] {
            assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,8]}}"#, data: eight)), "invalidValue", field: "tensor \"w\" shape")
        }
    }

    func testBadDataOffsets() {
        assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#, data: eight)), "invalidValue", field: "tensor \"w\" data_offsets [8, 4]")
        for offsets in ["[0]", "[0,8,9]", "[-1,7]", "[0,8.0]", "\"0,8\""] {
            assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":\#(offsets)}}"#, data: eight)), "invalidValue", field: "tensor \"w\" data_offsets")
        }
    }

    func testOffsetsOutOfBounds() {
        assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: eight)), "truncated", field: "tensor \"w\" data_offsets [0, 16]")
        assertInputError(try parse(file(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[9223372036854775807,9223372036854775807]}}"#, data: eight)), "truncated", field: "tensor \"w\"")
    }

    func testOverlappingEntries() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertInputError(try parse(file(header, data: [UInt8](repeating: 0, count: 12))), "invalidValue", field: "tensor \"b\" data_offsets [4, 12]", reason: "overlapping tensor \"a\"")
    }

    func testGapBetweenEntries() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#
        assertInputError(try parse(file(header, data: [UInt8](repeating: 0, count: 20))), "invalidValue", field: "tensor \"b\" data_offsets [12, 20]", reason: "gap of 4 bytes after tensor \"a\"")
        let late = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertInputError(try parse(file(late, data: [UInt8](repeating: 0, count: 12))), "invalidValue", field: "tensor \"a\"", reason: "at the start")
    }

    func testByteCountNotNumelTimesSize() throws {
        let header = #"{"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[96,288],"data_offsets":[0,100]}}"#
        let error = assertInputError(try parse(file(header, data: [UInt8](repeating: 0, count: 100))), "invalidValue", field: "tensor \"h.0.attn.c_attn.weight\" data_offsets [0, 100]")
        XCTAssertEqual(error?.description, "bad.safetensors: tensor \"h.0.attn.c_attn.weight\" data_offsets [0, 100]: expected 110592 bytes (F32 × [96, 288]), found 100")
        assertInputError(try parse(file(#"{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}"#, data: eight)), "invalidValue", field: "tensor \"w\"", reason: "6 bytes (BF16 × [3])")
    }

    func testDuplicateTensorName() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        assertInputError(try parse(file(header, data: eight)), "invalidHeader", field: "tensor \"a\"", reason: "more than once")
        let dupKey = #"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        assertInputError(try parse(file(dupKey, data: eight)), "invalidHeader", field: "tensor \"a\" dtype", reason: "more than once")
    }

    func testBadMetadata() {
        assertInputError(try parse(file(#"{"__metadata__":{"a":1}}"#)), "invalidValue", field: "__metadata__[\"a\"]")
        assertInputError(try parse(file(#"{"__metadata__":["a"]}"#)), "invalidValue", field: "__metadata__")
        assertInputError(try parse(file(#"{"__metadata__":{"a":"x","a":"y"}}"#)), "invalidHeader", field: "__metadata__[\"a\"]")
        assertInputError(try parse(file(#"{"__metadata__":{},"__metadata__":{}}"#)), "invalidHeader", field: "__metadata__")
    }

    func testTrailingDataBeyondLastTensor() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        assertInputError(try parse(file(header, data: eight)), "invalidValue", field: "data section", reason: "4 trailing bytes")
        assertInputError(try parse(file("{}", data: [0])), "invalidValue", field: "data section")
    }

    func testAcceptedEdgeCases() throws {
        // Space padding, whitespace, escapes, zero-size tensors sharing an offset, no tensors at all.
        let header = "{ \"__metadata__\" : {\"k\\u00e9\\ud83d\\ude00\":\"v\"},\n \"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]},"
            + "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}, \"y\":{\"dtype\":\"BOOL\",\"shape\":[0,1],\"data_offsets\":[4,4]}}    "
        let f = try parse(file(header, data: [0x00, 0x3C, 0x00, 0xC0]))
        XCTAssertEqual(f.metadata, ["ké😀": "v"])
        XCTAssertEqual(f.entries.map(\.name), ["z", "a", "y"])
        XCTAssertEqual(try f.floats("a"), [1, -2])
        XCTAssertEqual(f["a"]?.byteRange, (8 + header.utf8.count)..<(8 + header.utf8.count + 4))
        XCTAssertEqual(try parse(file("{}")).entries.count, 0)
        XCTAssertEqual(try parse(file("{}        ")).entries.count, 0)
    }

    // MARK: - Mutation smoke test

    func testRandomMutationsNeverCrash() throws {
        let valid = try SafeTensorsWriter.encode(sampleTensors(), metadata: ["a": "b", "format": "pt"])
        let headerEnd = 8 + Int(valid.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        var rng = FormatFuzzRNG(seed: 0x5EED)
        var parsed = 0, rejected = 0
        for _ in 0..<3000 {
            var bytes = [UInt8](valid)
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                switch rng.next() % 6 {
                case 0, 1:  // flip a bit, mostly in the header
                    let i = rng.next() % 4 == 0 ? Int(rng.next() % UInt64(bytes.count)) : Int(rng.next() % UInt64(min(headerEnd, bytes.count)))
                    bytes[i] ^= UInt8(1 << (rng.next() % 8))
                case 2:     // replace a header byte with a JSON-significant one
                    let i = Int(rng.next() % UInt64(min(headerEnd, bytes.count)))
                    let specials = Array("{}[],:\"0123456789-. e\\".utf8)
                    bytes[i] = specials[Int(rng.next() % UInt64(specials.count))]
                case 3:     // truncate
                    bytes.removeLast(Int(rng.next() % UInt64(bytes.count + 1)))
                case 4:     // insert bytes
                    let i = Int(rng.next() % UInt64(bytes.count + 1))
                    bytes.insert(contentsOf: (0..<(1 + rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
                default:    // rewrite the header length
                    let n = rng.next() % 2 == 0 ? rng.next() : UInt64(headerEnd - 8) &+ (rng.next() % 17) &- 8
                    if bytes.count >= 8 { for k in 0..<8 { bytes[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) } }
                }
                if bytes.isEmpty { break }
            }
            do {
                let f = try SafeTensorsFile(data: Data(bytes), source: "fuzz")
                for e in f.entries {
                    XCTAssertTrue(e.byteRange.lowerBound >= 8 && e.byteRange.upperBound <= bytes.count)
                    _ = try? f.floats(e.name)
                }
                parsed += 1
            } catch is InputError {
                rejected += 1
            } catch {
                XCTFail("non-InputError: \(error)")
            }
        }
        XCTAssertEqual(parsed + rejected, 3000)
        XCTAssertGreaterThan(rejected, 1000)
    }
}

// MARK: - Helpers shared by format tests

private struct FormatFuzzRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
