import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Decoding from weights kept in their GGUF blocks (`QuantizedMatrix`, `Transformer.quantizedDecoding`):
/// each value dequantised exactly as `GGUFFile.floats` dequantises it, products within float
/// rounding of the fp32 product over those floats, every row's sums independent of how many rows
/// are computed together, and a model's logits within 1e-5 of the fp32 path with the same greedy tokens.
final class QuantizedDecodingTests: XCTestCase {
    static let quantized = ["q8_0": QuantizedMatrix.Format.q8_0, "q4_0": .q4_0, "q4_1": .q4_1, "q5_0": .q5_0, "q5_1": .q5_1,
                            "q2_k": .q2_K, "q3_k": .q3_K, "q4_k": .q4_K, "q5_k": .q5_K, "q6_k": .q6_K]

    func quantsFile() throws -> GGUFFile {
        try GGUFFile(contentsOf: fixturesURL.appendingPathComponent("gguf/quants.gguf"))
    }

    func matrix(_ file: GGUFFile, _ name: String) throws -> (QuantizedMatrix, [Float]) {
        let info = try XCTUnwrap(file[name])
        let rows = info.torchShape[0], columns = info.torchShape[1]
        let q = try file.withBytes(of: name) {
            QuantizedMatrix(format: Self.quantized[name]!, rows: rows, columns: columns, data: $0)
        }
        return (q, try file.floats(name))
    }

    /// A = the identity: C = Wᵀ, each value the one gguf-py's dequantisation gives, bit for bit
    /// (but for the sign of zero: −0 · 1 + 0 · x sums to +0).
    func testDequantisationIsExact() throws {
        let file = try quantsFile()
        for name in Self.quantized.keys.sorted() {
            let (q, floats) = try matrix(file, name)
            let k = q.columns
            var identity = [Float](repeating: 0, count: k * k)
            for i in 0..<k { identity[i * k + i] = 1 }
            forEachKernel { kernel in
                var c = [Float](repeating: .nan, count: k * q.rows)
                q.multiply(m: k, a: identity, lda: k, c: &c, ldc: q.rows, accumulate: false)
                var transposed = [Float](repeating: 0, count: k * q.rows)
                for j in 0..<q.rows { for p in 0..<k { transposed[p * q.rows + j] = floats[j * k + p] } }
                func bits(_ x: [Float]) -> [UInt32] { x.map { $0 == 0 ? 0 : $0.bitPattern } }
                XCTAssertEqual(bits(c), bits(transposed), "\(name) \(kernel)")
                XCTAssertTrue(transposed.contains { $0 != 0 }, "\(name) has non-zero values")
            }
        }
    }

    /// Random rows of A against the quantised rows: within float rounding of GEMM over the
    /// dequantised floats; each row's result bitwise the same for m = 1…9 rows, any thread
    /// count, and with accumulate (C + the product).
    func testProductsMatchFloatsWhateverTheRowCount() throws {
        let file = try quantsFile()
        for name in Self.quantized.keys.sorted() {
            let (q, floats) = try matrix(file, name)
            // 19 rows: two full groups of the AVX-512 path (8 rows a pass) and a partial one.
            let k = q.columns, n = q.rows, m = 19
            let a = randomFloats(m * k, seed: 7)
            let savedThreads = Parallel.threadCount
            defer { Parallel.threadCount = savedThreads }
            var simdResults: [GEMM.Kernel: [UInt32]] = [:]
            forEachKernel { kernel in
                var reference = [Float](repeating: 0, count: m * n)
                GEMM.multiply(m: m, n: n, k: k, a: a, lda: k, transA: false, b: floats, ldb: k, transB: true,
                              c: &reference, ldc: n, accumulate: false)
                var all = [Float](repeating: 0, count: m * n)
                q.multiply(m: m, a: a, lda: k, c: &all, ldc: n, accumulate: false)
                XCTAssertLessThan(maxRelativeError(all, reference), 1e-6, "\(name) \(kernel)")
                if kernel != .portable { simdResults[kernel] = all.map(\.bitPattern) }
                for rows in 1...m {
                    for threads in [1, 2, 3] {
                        Parallel.threadCount = threads
                        var c = [Float](repeating: 0, count: rows * n)
                        q.multiply(m: rows, a: a, lda: k, c: &c, ldc: n, accumulate: false)
                        XCTAssertEqual(c.map(\.bitPattern), Array(all.prefix(rows * n)).map(\.bitPattern),
                                       "\(name) \(kernel) \(rows) rows, \(threads) threads")
                    }
                }
                Parallel.threadCount = savedThreads
                var added = [Float](repeating: 1.5, count: m * n)
                q.multiply(m: m, a: a, lda: k, c: &added, ldc: n, accumulate: true)
                XCTAssertEqual(added.map(\.bitPattern), all.map { 1.5 + $0 }.map(\.bitPattern), "\(name) \(kernel) accumulate")
            }
            // AVX-512 runs the AVX2 chains in wider registers: the same bits.
            if let avx2 = simdResults[.avx2], let avx512 = simdResults[.avx512] {
                XCTAssertEqual(avx512, avx2, "\(name): AVX-512 and AVX2 sums differ")
            }
        }
    }

    /// Each weight row's results do not depend on how many weight rows are computed together
    /// either (the AVX-512 path dequantises 4 weight rows at a time, with 1–3 left over): 1…9
    /// weight rows (row j a copy of the file's row j % 5) against 1…19 rows of A give, in column j,
    /// the bits of the file's 5 rows, with every kernel; AVX-512 gives AVX2's bits.
    func testProductsWhateverTheWeightRowCount() throws {
        let file = try quantsFile()
        for name in Self.quantized.keys.sorted() {
            let (q, _) = try matrix(file, name)
            let k = q.columns, m = 19
            let a = randomFloats(m * k, seed: 11)
            let source = try file.withBytes(of: name) { Array($0) }
            var simdResults: [GEMM.Kernel: [UInt32]] = [:]
            forEachKernel { kernel in
                var five = [Float](repeating: 0, count: m * q.rows)
                q.multiply(m: m, a: a, lda: k, c: &five, ldc: q.rows, accumulate: false)
                var bits: [UInt32] = []
                for n in 1...9 {
                    let data = (0..<n).flatMap { source[($0 % q.rows) * q.rowBytes ..< ($0 % q.rows + 1) * q.rowBytes] }
                    let copies = data.withUnsafeBytes { QuantizedMatrix(format: q.format, rows: n, columns: k, data: $0) }
                    for rows in [1, 5, 6, 7, m] {
                        var c = [Float](repeating: 0, count: rows * n)
                        copies.multiply(m: rows, a: a, lda: k, c: &c, ldc: n, accumulate: false)
                        let expected = (0..<rows * n).map { five[$0 / n * q.rows + $0 % n % q.rows] }
                        XCTAssertEqual(c.map(\.bitPattern), expected.map(\.bitPattern), "\(name) \(kernel) \(n) weight rows, \(rows) rows")
                        bits += c.map(\.bitPattern)
                    }
                }
                if kernel != .portable { simdResults[kernel] = bits }
            }
            if let avx2 = simdResults[.avx2], let avx512 = simdResults[.avx512] {
                XCTAssertEqual(avx512, avx2, "\(name): AVX-512 and AVX2 sums differ")
            }
        }
    }

    /// The GGUF families (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and K-quants among F16/BF16/F32; llama's
    /// permuted q/k rows):
    /// quantised decoding gives the fp32 path's logits (over the same dequantised weights) within
    /// 1e-5, the same greedy tokens, and in a batch the bits it gives alone.
    func testQuantisedDecodingMatchesFloats() throws {
        for family in ["llama", "qwen2", "qwen3", "gemma2"] {
            let url = fixturesURL.appendingPathComponent("gguf_families/\(family)/model.gguf")
            let model = try GGUFModel.load(from: url)
            let quantized = try GGUFModel.quantizedWeights(try GGUFFile(contentsOf: url), for: model)
            XCTAssertFalse(quantized.matrices.isEmpty, "\(family) has quantised projections")
            model.quantizedDecoding = quantized
            let v = model.config.vocabSize
            let text: [Int32] = (0..<24).map { Int32(($0 * 29 + 3) % v) }
            forEachKernel { kernel in
                let floats = KVCache(config: model.config), blocks = KVCache(config: model.config, quantized: true)
                for (i, token) in text.enumerated() {
                    let input = i == 0 ? Array(text.prefix(8)) : [token]
                    if i > 0 && i < 8 { continue }
                    let expected = Array(UnsafeBufferPointer(start: model.decode(input, cache: floats), count: v))
                    let got = Array(UnsafeBufferPointer(start: model.decode(input, cache: blocks), count: v))
                    XCTAssertLessThan(maxRelativeError(got, expected), 1e-5, "\(family) \(kernel) position \(i)")
                }
                let greedy = SamplingOptions(temperature: 0, maxTokens: 30)
                let fromBlocks = Generation.sample(model, prompt: [1, 2, 3], options: greedy)
                model.quantizedDecoding = nil
                XCTAssertEqual(Generation.sample(model, prompt: [1, 2, 3], options: greedy), fromBlocks, "\(family) \(kernel) greedy")
                model.quantizedDecoding = quantized
                let requests = (0..<5).map { SampleRequest(prompt: [1, 2, 3], options: SamplingOptions(temperature: 1, seed: UInt64($0), maxTokens: 20)) }
                XCTAssertEqual(Generation.sample(model, requests: requests, decodeBatch: 5),
                               requests.map { Generation.sample(model, prompt: $0.prompt, options: $0.options) }, "\(family) \(kernel) batched")
            }
        }
    }
}
