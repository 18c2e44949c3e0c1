import Foundation
import MyopiaKernels
import XCTest
import MyopiaTestSupport
import Myopia

/// GGUF reader: the tiny fixture written by llama.cpp's `gguf` package
/// (tools/reference/gguf_reference.py), hand-built blocks, one test per malformed case, a random
/// mutation smoke test, and the real SmolLM2-135M file.
final class GGUFTests: XCTestCase {
    private static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/gguf")

    // MARK: - The gguf-py fixture

    func testTinyFixtureMetadataRoundTrips() throws {
        let f = try GGUFFile(contentsOf: Self.fixtures.appendingPathComponent("tiny.gguf"))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataOffset % 64, 0)
        // The values written by gguf_reference.py, each with the type it was written as.
        let expected: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")),
            ("general.alignment", .uint32(64)),
            ("test.uint8", .uint8(200)),
            ("test.int8", .int8(-100)),
            ("test.uint16", .uint16(60000)),
            ("test.int16", .int16(-30000)),
            ("test.uint32", .uint32(4_000_000_000)),
            ("test.int32", .int32(-2_000_000_000)),
            ("test.float32", .float32(0.1)),
            ("test.bool", .bool(true)),
            ("test.string", .string("héllo, wörld ✓")),
            ("test.uint64", .uint64(.max)),
            ("test.int64", .int64(.min)),
            ("test.float64", .float64(-1.0 / 3.0)),
            ("test.strings", .array(.string, [.string("<s>"), .string(""), .string("Ġthe"), .string("日本")])),
            ("test.int32s", .array(.int32, [.int32(1), .int32(-2), .int32(3)])),
            ("test.float32s", .array(.float32, [.float32(0.5), .float32(-1.25)])),
            ("test.uint8s", .array(.uint8, [.uint8(0), .uint8(255)])),
            ("test.nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [.int32(3)]),
                                             .array(.int32, [.int32(4), .int32(5), .int32(6)])])),
            ("llama.block_count", .uint32(1)),
        ]
        XCTAssertEqual(f.metadataKeys, expected.map(\.0))
        for (key, value) in expected { XCTAssertEqual(f.metadata[key], value, key) }
        XCTAssertEqual(GGUFValueType.allCases.map(\.rawValue), Array(0...12))
        XCTAssertEqual(Set(f.metadata.values.map(\.type)), Set(GGUFValueType.allCases), "every value type appears")

        // Typed accessors.
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.int("test.uint32"), 4_000_000_000)
        XCTAssertEqual(try f.int("test.int8"), -100)
        XCTAssertEqual(try f.int("test.int64"), Int.min)
        XCTAssertEqual(try f.float("test.float32"), 0.1)
        XCTAssertEqual(try f.double("test.float64"), -1.0 / 3.0)
        XCTAssertEqual(try f.bool("test.bool"), true)
        XCTAssertEqual(try f.stringArray("test.strings"), ["<s>", "", "Ġthe", "日本"])
        XCTAssertEqual(try f.intArray("test.int32s"), [1, -2, 3])
        XCTAssertEqual(try f.floatArray("test.float32s"), [0.5, -1.25])
        XCTAssertEqual(try f.int("llama.rope.dimension_count", default: 64), 64)
        assertInputError(try f.int("test.uint64"), "invalidValue", field: "metadata \"test.uint64\"")   // > Int.max
        assertInputError(try f.string("test.int32"), "invalidValue", field: "metadata \"test.int32\"", reason: "INT32")
        assertInputError(try f.stringArray("test.int32s"), "invalidValue", field: "metadata \"test.int32s\"[0]")
        assertInputError(try f.intArray("test.string"), "invalidValue", field: "metadata \"test.string\"", reason: "ARRAY")
        assertInputError(try f.int("llama.nope"), "missing", field: "metadata \"llama.nope\"")
    }

    func testTinyFixtureTensorsMatchGGUFPy() throws {
        let f = try GGUFFile(contentsOf: Self.fixtures.appendingPathComponent("tiny.gguf"))
        let reference = try SafeTensorsFile(contentsOf: Self.fixtures.appendingPathComponent("tiny_reference.safetensors"))
        let expectedTypes: [String: GGUFTensorType] = [
            "token_embd.weight": .q8_0, "blk.0.attn_norm.weight": .f32, "blk.0.ffn_up.weight": .q4_1,
            "f32.matrix": .f32, "f16.cube": .f16, "bf16.matrix": .bf16, "f32.four_d": .f32,
        ]
        XCTAssertEqual(Set(f.tensors.map(\.name)), Set(reference.names))
        XCTAssertEqual(f.tensors.count, expectedTypes.count)
        XCTAssertEqual(f["token_embd.weight"]?.shape, [64, 5])        // GGUF order: ne0 first
        XCTAssertEqual(f["f32.four_d"]?.shape, [4, 3, 1, 2])
        for t in f.tensors {
            XCTAssertEqual(t.type, expectedTypes[t.name], t.name)
            XCTAssertEqual(t.offset % 64, 0, t.name)
            let ref = try XCTUnwrap(reference[t.name])
            XCTAssertEqual(t.torchShape, ref.shape, t.name)
            XCTAssertEqual(t.byteCount, t.elementCount / t.type.blockSize * t.type.blockBytes, t.name)
            // Exact functions of the stored bytes, rounded as numpy does: equal bit for bit.
            let got = try f.floats(t.name)
            let want = try reference.floats(t.name)
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(t.name) (\(t.type))")
            XCTAssertLessThanOrEqual(zip(got, want).map { abs($0 - $1) }.max() ?? 0, 1e-6, t.name)
        }
        // The fixture exercises the interesting blocks: a zero Q8_0 block, a constant Q4_1 block.
        let q8 = try f.floats("token_embd.weight")
        XCTAssertEqual(Array(q8[64..<96]), [Float](repeating: 0, count: 32))
        let q4 = try f.floats("blk.0.ffn_up.weight")
        XCTAssertEqual(Set(q4[32..<64]).count, 1)
    }

    // MARK: - Hand-built blocks (independent of the Python package)

    func testHandBuiltQuantisedBlocksFollowTheSpec() throws {
        let f = try GGUFFile(data: Data(Builder.valid().bytes()), source: "hand.gguf")
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(try f.floats("a"), (0..<8).map { Float($0) - 3.5 })
        // Q8_0: d = 0.5, q = -16...15.
        XCTAssertEqual(try f.floats("b"), (-16..<16).map { Float($0) * 0.5 })
        // Q4_1 block 0: d = 0.25, m = -1, byte j holds weight j (low nibble) and weight j+16 (high).
        // Block 1: d = 2, m = 0.5, every byte 0xF0: weights 0-15 are 0, weights 16-31 are 15.
        let q4 = try f.floats("c")
        XCTAssertEqual(Array(q4[0..<16]), (0..<16).map { 0.25 * Float($0) - 1 })
        XCTAssertEqual(Array(q4[16..<32]), (0..<16).map { 0.25 * Float(15 - $0) - 1 })
        XCTAssertEqual(Array(q4[32..<48]), [Float](repeating: 0.5, count: 16))
        XCTAssertEqual(Array(q4[48..<64]), [Float](repeating: 30.5, count: 16))
        // copyFloats into a caller buffer; wrong sizes and names are typed errors.
        var buffer = [Float](repeating: .nan, count: 64)
        try buffer.withUnsafeMutableBufferPointer { try f.copyFloats("c", into: $0) }
        XCTAssertEqual(buffer, q4)
        assertInputError(try buffer.withUnsafeMutableBufferPointer { try f.copyFloats("b", into: $0) }, "invalidValue", field: "tensor \"b\"")
        assertInputError(try f.floats("nope"), "missing", field: "tensor \"nope\"")
        XCTAssertEqual(try f.withBytes(of: "b") { $0.count }, 34)
        // Empty arrays (the Python writer refuses them; the format allows them) and a zero-sized tensor.
        var b = Builder.valid()
        b.kvs.append(("empty", Builder.array(of: 8, count: 0, [])))
        b.tensors.append(.init(name: "z", ne: [0, 3], type: 1, offset: 0))
        let g = try GGUFFile(data: Data(b.bytes()), source: "empty.gguf")
        XCTAssertEqual(g.metadata["empty"], .array(.string, []))
        XCTAssertEqual(try g.floats("z"), [])
        // Version 2 has the same layout.
        b = Builder.valid()
        b.version = 2
        XCTAssertEqual(try GGUFFile(data: Data(b.bytes()), source: "v2.gguf").version, 2)
    }

    func testKnownButUnsupportedTypeParsesAndNamesTheType() throws {
        var b = Builder.valid()
        b.tensors.append(.init(name: "k", ne: [256, 1], type: 16, offset: 160))   // IQ2_XXS: 66 bytes per 256
        b.data += [UInt8](repeating: 0, count: 160 - b.data.count) + [UInt8](repeating: 0, count: 66)
        let f = try GGUFFile(data: Data(b.bytes()), source: "k.gguf")
        XCTAssertEqual(f["k"]?.type, .iq2_XXS)
        XCTAssertEqual(f["k"]?.byteCount, 66)
        // The message names the tensor, the type and the types that convert.
        assertInputError(try f.floats("k"), "unsupported", field: "tensor \"k\" type", reason: "IQ2_XXS (16)")
        assertInputError(try f.floats("k"), "unsupported", field: "tensor \"k\" type",
                         reason: "expected one of F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16")
        var buffer = [Float](repeating: 0, count: 256)
        assertInputError(try buffer.withUnsafeMutableBufferPointer { try f.copyFloats("k", into: $0) }, "unsupported", field: "tensor \"k\" type")
        XCTAssertEqual(GGUFTensorType.q8_0.description, "Q8_0 (8)")
        XCTAssertEqual(GGUFTensorType.iq2_XXS.description, "IQ2_XXS (16)")
        XCTAssertEqual(Set(GGUFTensorType.allCases.filter(\.isDequantizable)),
                       [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K])
    }

    // MARK: - Every block type, bit for bit against gguf.quants.dequantize

    /// The block types with their own kernel (every dequantisable type but the plain ones).
    private static let blockTypes = GGUFTensorType.allCases.filter { $0.isDequantizable && $0.blockSize > 1 }

    /// quants.gguf (tools/reference/gguf_reference.py): one raw tensor per block type, 10 blocks of
    /// random bytes with finite f16 scales and mins — 5 drawn from a sane range, then (d, min) =
    /// (+0, -0), (-0, +0), (-0, -0), (subnormal, -subnormal), (large, -65504) — and what
    /// `gguf.quants.dequantize` made of them. Compared as bit patterns: signed zeros count.
    func testEveryBlockTypeMatchesGGUFPyBitForBit() throws {
        let f = try GGUFFile(contentsOf: Self.fixtures.appendingPathComponent("quants.gguf"))
        let reference = try SafeTensorsFile(contentsOf: Self.fixtures.appendingPathComponent("quants_reference.safetensors"))
        let recorded = try XCTUnwrap(reference.metadata["reference"])
        XCTAssertTrue(recorded.contains("\"gguf\": \"0.19.0\""), recorded)
        XCTAssertEqual(Set(f.tensors.map(\.type)), Set(Self.blockTypes), "one tensor of each block type")
        XCTAssertEqual(Self.blockTypes.count, 10)
        for t in f.tensors {
            XCTAssertEqual(t.name, t.type.name.lowercased())
            XCTAssertEqual(t.shape, [2 * t.type.blockSize, 5], t.name)
            let ref = try XCTUnwrap(reference[t.name])
            XCTAssertEqual(t.torchShape, ref.shape, t.name)
            let got = try f.floats(t.name)
            let want = try reference.floats(t.name)
            XCTAssertEqual(got.count, 10 * t.type.blockSize)
            if let i = got.indices.first(where: { got[$0].bitPattern != want[$0].bitPattern }) {
                XCTFail("\(t.type): value \(i) (block \(i / t.type.blockSize)) is \(got[i]) (0x\(String(got[i].bitPattern, radix: 16))), gguf-py \(want[i]) (0x\(String(want[i].bitPattern, radix: 16)))")
            }
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(t.type)")
            // The edge blocks are what they claim: finite, with signed zeros, tiny and large values.
            XCTAssertTrue(got.allSatisfy(\.isFinite), t.name)
            let block = { (b: Int) in got[(b * t.type.blockSize)..<((b + 1) * t.type.blockSize)] }
            XCTAssertTrue((5..<8).contains { block($0).contains { $0 == 0 && $0.sign == .minus } }, "\(t.name): a -0")
            XCTAssertGreaterThan(block(9).map(abs).max()!, 1e4, t.name)
            XCTAssertLessThan(block(8).map(abs).max()!, 0.1, t.name)      // subnormal scales, small values
        }
    }

    /// A tensor of many blocks is cut into parallel chunks of 65,536 values: the result is still
    /// every block on its own (the fixture's blocks tiled past a chunk boundary, and one block more).
    func testLargeTensorsMatchBlockByBlockAcrossChunks() throws {
        let fixture = try GGUFFile(contentsOf: Self.fixtures.appendingPathComponent("quants.gguf"))
        var b = Builder()
        var expected: [String: [UInt32]] = [:]
        for t in fixture.tensors {
            let blocks = try fixture.withBytes(of: t.name) { [UInt8]($0) }
            let perBlock = try fixture.floats(t.name).map(\.bitPattern)
            let count = (65_536 / t.type.blockSize) * 2 + 1                 // two chunks and a bit
            var data: [UInt8] = [], want: [UInt32] = []
            for i in 0..<count {
                let k = (i * 7) % 10
                data += blocks[(k * t.type.blockBytes)..<((k + 1) * t.type.blockBytes)]
                want += perBlock[(k * t.type.blockSize)..<((k + 1) * t.type.blockSize)]
            }
            b.data += [UInt8](repeating: 0, count: (32 - b.data.count % 32) % 32)
            b.tensors.append(.init(name: t.name, ne: [UInt64(count * t.type.blockSize)], type: t.type.rawValue, offset: UInt64(b.data.count)))
            b.data += data
            expected[t.name] = want
        }
        let f = try GGUFFile(data: Data(b.bytes()), source: "large.gguf")
        XCTAssertEqual(f.tensors.count, 10)
        for t in f.tensors {
            XCTAssertGreaterThan(t.elementCount, 2 * 65_536)
            XCTAssertTrue(try f.floats(t.name).map(\.bitPattern) == expected[t.name]!, "\(t.type)")
        }
    }

    /// One Q4_K block made by hand with ggml's packing of 6-bit scales and mins (quantize_row_q4_K_ref),
    /// independent of the Python package: the sub-blocks 4..<8 need the high bits of bytes 0..<8.
    func testHandBuiltQ4KBlockFollowsTheSpec() throws {
        let scales: [UInt8] = [1, 63, 17, 32, 40, 5, 62, 33], mins: [UInt8] = [0, 7, 63, 16, 48, 1, 31, 60]
        var packed = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            if j < 4 {
                packed[j] = scales[j]
                packed[j + 4] = mins[j]
            } else {
                packed[j + 4] = (scales[j] & 0x0F) | ((mins[j] & 0x0F) << 4)
                packed[j - 4] |= (scales[j] >> 4) << 6
                packed[j] |= (mins[j] >> 4) << 6
            }
        }
        // Sub-block k (values 32k..<32k+32) holds q = (k + l) % 16 at position l.
        var qs = [UInt8](repeating: 0, count: 128)
        for k in 0..<8 {
            for l in 0..<32 { qs[32 * (k / 2) + l] |= UInt8((k + l) % 16) << (4 * UInt8(k % 2)) }
        }
        var b = Builder()
        b.tensors = [.init(name: "k4", ne: [256], type: 12, offset: 0)]
        b.data = Builder.le16(0x3800) + Builder.le16(0x3400) + packed + qs                 // d = 0.5, dmin = 0.25
        let got = try GGUFFile(data: Data(b.bytes()), source: "q4k.gguf").floats("k4")
        let want = (0..<256).map { e -> Float in
            let k = e / 32
            return Float(0.5) * Float(scales[k]) * Float((k + e % 32) % 16) - Float(0.25) * Float(mins[k])
        }
        XCTAssertEqual(got, want)
    }

    // MARK: - Malformed files: one specific typed error each

    private func parse(_ b: Builder) throws -> GGUFFile { try GGUFFile(data: Data(b.bytes()), source: "bad.gguf") }
    private func parse(_ bytes: [UInt8]) throws -> GGUFFile { try GGUFFile(data: Data(bytes), source: "bad.gguf") }

    func testHeaderErrors() {
        assertInputError(try parse([]), "truncated", field: "header magic")
        assertInputError(try parse(Array("GGU".utf8)), "truncated", field: "header magic")
        var bytes = Builder.valid().bytes()
        bytes[0] = UInt8(ascii: "X")
        assertInputError(try parse(bytes), "invalidHeader", field: "header magic", reason: "58 47 55 46")
        assertInputError(try parse(Array("GGUF\u{3}\0".utf8)), "truncated", field: "header version")
        var b = Builder.valid()
        b.version = 1
        assertInputError(try parse(b), "unsupported", field: "header version", reason: "1")
        b.version = 3 << 24
        assertInputError(try parse(b), "unsupported", field: "header version", reason: "big-endian")
        b = Builder.valid()
        b.tensorCount = 1 << 60
        assertInputError(try parse(b), "invalidValue", field: "header tensor_count", reason: "\(1 << 60)")
        b = Builder.valid()
        b.kvCount = UInt64.max
        assertInputError(try parse(b), "invalidValue", field: "header metadata_kv_count")
        b = Builder.valid()
        b.kvCount = 2   // one more entry than the file holds: the tensor table is read as an entry
        XCTAssertThrowsError(try parse(b)) { XCTAssertTrue($0 is InputError, "\($0)") }
    }

    func testMetadataErrors() {
        func with(_ kv: (String, [UInt8])) -> Builder { var b = Builder.valid(); b.kvs.append(kv); return b }
        // Key length absurd / past the end, empty and not UTF-8.
        var b = Builder.valid()
        b.rawKeyLength = UInt64.max
        assertInputError(try parse(b), "invalidValue", field: "metadata entry 0 key length")
        b.rawKeyLength = 1_000
        assertInputError(try parse(b), "truncated", field: "metadata entry 0 key", reason: "1000 bytes")
        assertInputError(try parse(with(("", Builder.u32Value(1)))), "invalidValue", field: "metadata entry 1 key", reason: "non-empty")
        b = Builder.valid()
        b.kvs.append((String(decoding: [0x6B], as: UTF8.self), Builder.u32Value(1)))
        var bytes = b.bytes()
        bytes[bytes.firstIndex(of: 0x6B, after: 24)!] = 0xFF
        assertInputError(try parse(bytes), "invalidValue", field: "metadata entry 1 key", reason: "not valid UTF-8")
        // Unknown value type, bad bool, string value past the end.
        assertInputError(try parse(with(("k", Builder.le32(13) + Builder.le32(0)))), "unsupported", field: "metadata \"k\" type", reason: "13")
        assertInputError(try parse(with(("k", Builder.le32(7) + [2]))), "invalidValue", field: "metadata \"k\"", reason: "BOOL")
        assertInputError(try parse(with(("k", Builder.le32(8) + Builder.le64(1 << 40)))), "truncated", field: "metadata \"k\"")
        // Arrays: absurd count, unknown element type, element past the end, nesting too deep.
        assertInputError(try parse(with(("k", Builder.array(of: 4, count: 1 << 40, [])))), "invalidValue", field: "metadata \"k\" array count")
        assertInputError(try parse(with(("k", Builder.array(of: 9, count: UInt64.max, [])))), "invalidValue", field: "metadata \"k\" array count")
        assertInputError(try parse(with(("k", Builder.array(of: 42, count: 1, [0]))))  , "unsupported", field: "metadata \"k\" array type", reason: "42")
        assertInputError(try parse(with(("k", Builder.array(of: 8, count: 2, Builder.gstr("a") + Builder.le64(1 << 20))))), "truncated", field: "metadata \"k\"[1]")
        var deep = Builder.array(of: 4, count: 0, [])
        for _ in 0..<GGUFFile.maxArrayDepth { deep = Builder.array(of: 9, count: 1, Array(deep.dropFirst(4))) }
        assertInputError(try parse(with(("k", deep))), "invalidValue", field: "metadata \"k\"[0]", reason: "nested")
        // Duplicate key.
        assertInputError(try parse(with(("general.architecture", Builder.stringValue("x")))), "invalidHeader", field: "metadata \"general.architecture\"", reason: "more than once")
        // general.alignment must be a power of two integer.
        assertInputError(try parse(with(("general.alignment", Builder.u32Value(48)))), "invalidValue", field: "general.alignment", reason: "48")
        assertInputError(try parse(with(("general.alignment", Builder.stringValue("32")))), "invalidValue", field: "general.alignment")
    }

    func testTensorTableErrors() {
        func with(_ mutate: (inout Builder) -> Void) -> Builder { var b = Builder.valid(); mutate(&b); return b }
        assertInputError(try parse(with { $0.tensors[1].name = "a" }), "invalidHeader", field: "tensor \"a\"", reason: "more than once")
        assertInputError(try parse(with { $0.tensors[0].ne = [1, 1, 1, 1, 8] }), "invalidValue", field: "tensor \"a\" n_dims", reason: "5")
        assertInputError(try parse(with { $0.tensors[0].ne = [UInt64.max] }), "invalidValue", field: "tensor \"a\" ne[0]")
        assertInputError(try parse(with { $0.tensors[0].ne = [1 << 32, 1 << 32, 1 << 32] }), "invalidValue", field: "tensor \"a\" shape", reason: "overflow")
        assertInputError(try parse(with { $0.tensors[0].type = 28; $0.tensors[0].ne = [UInt64(Int64.max)] }), "invalidValue", field: "tensor \"a\" shape", reason: "overflow")   // F64
        assertInputError(try parse(with { $0.tensors[2].type = 99 }), "unsupported", field: "tensor \"c\" type", reason: "99")
        assertInputError(try parse(with { $0.tensors[1].ne = [33, 1] }), "invalidValue", field: "tensor \"b\" shape [33, 1]", reason: "multiple of 32")
        assertInputError(try parse(with { $0.tensors[2].ne = [16, 4] }), "invalidValue", field: "tensor \"c\" shape", reason: "Q4_1 block size")
        assertInputError(try parse(with { $0.tensors[1].offset = 40 }), "invalidValue", field: "tensor \"b\" offset", reason: "multiple of 32")
        assertInputError(try parse(with { $0.tensors[2].offset = 128 }), "truncated", field: "tensor \"c\" data")
        assertInputError(try parse(with { $0.tensors[2].offset = UInt64.max - 31 }), "truncated", field: "tensor \"c\" data")
        assertInputError(try parse(with { $0.tensors[2].ne = [32, 1 << 50] }), "truncated", field: "tensor \"c\" data")
        assertInputError(try parse(with { $0.tensors[1].offset = 0 }), "invalidValue", field: "offset", reason: "overlapping tensor")
        assertInputError(try parse(with { $0.tensors[0].ne = [16, 2] }), "invalidValue", field: "tensor \"b\" offset", reason: "overlapping tensor \"a\"")
        assertInputError(try parse(with { $0.tensors[0].name = "" }), "invalidValue", field: "tensor info 0 name")
        assertInputError(try parse(with { $0.alignment = 64 }), "invalidValue", field: "tensor \"b\" offset", reason: "multiple of 64")
        // Data cut short.
        assertInputError(try parse(with { $0.data.removeLast() }), "truncated", field: "tensor \"c\" data", reason: "136")
    }

    /// Every prefix of the fixture is refused with an InputError, until the data of the last tensor is complete.
    func testEveryTruncationIsATypedError() throws {
        let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny.gguf")))
        let full = try parse(bytes)
        let end = full.tensors.map { full.dataOffset + $0.offset + $0.byteCount }.max()!
        for n in 0..<bytes.count {
            do {
                _ = try parse(Array(bytes[0..<n]))
                XCTAssertGreaterThanOrEqual(n, end, "a prefix of \(n) bytes parsed")
            } catch let error as InputError {
                XCTAssertLessThan(n, end, "\(n): \(error)")
                XCTAssertEqual(error.file, "bad.gguf")
            }
        }
    }

    // MARK: - Mutation smoke test

    func testRandomMutationsNeverCrash() throws {
        let valid = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny.gguf")))
        let headerEnd = try parse(valid).dataOffset
        var rng = SeededGenerator(seed: 0x6066)
        var parsed = 0, rejected = 0
        for _ in 0..<4000 {
            var bytes = valid
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                guard !bytes.isEmpty else { break }
                let i = Int(rng.next() % UInt64(min(headerEnd, bytes.count)))   // mostly the header and tables
                switch rng.next() % 6 {
                case 0, 1: bytes[i] ^= UInt8(1 << (rng.next() % 8))
                case 2: bytes[i] = [0x00, 0x01, 0x09, 0x0C, 0x20, 0x40, 0x7F, 0x80, 0xFF][Int(rng.next() % 9)]
                case 3: bytes.removeLast(Int(rng.next() % UInt64(bytes.count + 1)))
                case 4: bytes.insert(contentsOf: (0..<(1 + rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
                default:    // overwrite an aligned 8-byte word (a count, length, dimension or offset) with a boundary value
                    let w = i / 8 * 8
                    let v: UInt64 = [0, 1, 31, 32, 33, UInt64(Int64.max), .max, 1 << 32, UInt64(valid.count)][Int(rng.next() % 9)]
                    for k in 0..<8 where w + k < bytes.count { bytes[w + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
                }
            }
            do {
                let f = try parse(bytes)
                for t in f.tensors {
                    XCTAssertLessThanOrEqual(f.dataOffset + t.offset + t.byteCount, bytes.count)
                    if t.type.isDequantizable { XCTAssertEqual(try f.floats(t.name).count, t.elementCount) }
                }
                parsed += 1
            } catch is InputError {
                rejected += 1
            } catch {
                XCTFail("non-InputError: \(error)")
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        XCTAssertGreaterThan(parsed, 50)
    }

    // MARK: - SmolLM2-135M (the `smollm2-135m` asset, 98 MB, fetched from PyPI once)

}

// MARK: - A small GGUF writer for hand-built and malformed files

/// Three tensors by default: "a" F32 [4, 2] at 0, "b" Q8_0 [32, 1] at 32, "c" Q4_1 [32, 2] at 96
/// (136 bytes of data), and one metadata entry, general.architecture = "test".
private struct Builder {
    struct Tensor { var name: String; var ne: [UInt64]; var type: UInt32; var offset: UInt64 }

    var version: UInt32 = 3
    var tensorCount: UInt64? = nil
    var kvCount: UInt64? = nil
    /// Replaces the first key's length field.
    var rawKeyLength: UInt64? = nil
    var alignment = 32
    var kvs: [(String, [UInt8])] = [("general.architecture", Builder.stringValue("test"))]
    var tensors: [Tensor] = []
    var data: [UInt8] = []

    static func valid() -> Builder {
        var b = Builder()
        b.tensors = [
            .init(name: "a", ne: [4, 2], type: 0, offset: 0),
            .init(name: "b", ne: [32, 1], type: 8, offset: 32),
            .init(name: "c", ne: [32, 2], type: 3, offset: 96),
        ]
        b.data = (0..<8).flatMap { le32((Float($0) - 3.5).bitPattern) }
        b.data += [UInt8](repeating: 0, count: 32 - b.data.count)
        b.data += le16(0x3800) + (-16..<16).map { UInt8(bitPattern: Int8($0)) }                   // Q8_0: d 0.5
        b.data += [UInt8](repeating: 0, count: 96 - b.data.count)
        b.data += le16(0x3400) + le16(0xBC00) + (0..<16).map { UInt8($0 | ((15 - $0) << 4)) }      // d 0.25, m -1
        b.data += le16(0x4000) + le16(0x3800) + [UInt8](repeating: 0xF0, count: 16)                // d 2, m 0.5
        return b
    }

    func bytes() -> [UInt8] {
        var out = Array("GGUF".utf8) + Builder.le32(version)
        var allKVs = kvs
        if alignment != 32 { allKVs.append(("general.alignment", Builder.u32Value(UInt32(alignment)))) }
        out += Builder.le64(tensorCount ?? UInt64(tensors.count)) + Builder.le64(kvCount ?? UInt64(allKVs.count))
        for (i, (key, value)) in allKVs.enumerated() {
            out += Builder.gstr(key)
            if i == 0, let rawKeyLength { out.replaceSubrange((out.count - key.utf8.count - 8)..<(out.count - key.utf8.count), with: Builder.le64(rawKeyLength)) }
            out += value
        }
        for t in tensors {
            out += Builder.gstr(t.name) + Builder.le32(UInt32(t.ne.count)) + t.ne.flatMap(Builder.le64) + Builder.le32(t.type) + Builder.le64(t.offset)
        }
        out += [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment)
        return out + data
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    static func gstr(_ s: String) -> [UInt8] { le64(UInt64(s.utf8.count)) + Array(s.utf8) }
    /// Type tag + value.
    static func u32Value(_ v: UInt32) -> [UInt8] { le32(4) + le32(v) }
    static func stringValue(_ s: String) -> [UInt8] { le32(8) + gstr(s) }
    /// Type tag ARRAY + element type + count + raw element bytes.
    static func array(of element: UInt32, count: UInt64, _ elements: [UInt8]) -> [UInt8] { le32(9) + le32(element) + le64(count) + elements }
}

private extension Array where Element == UInt8 {
    func firstIndex(of byte: UInt8, after start: Int) -> Int? { self[start...].firstIndex(of: byte) }
}
