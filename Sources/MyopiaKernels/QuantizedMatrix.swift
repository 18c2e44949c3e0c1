import CMyopiaKernels

/// A weight matrix kept as ggml blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 of 32 values; the K-quants
/// Q2_K–Q6_K of 256): rows × columns, each row `columns / blockValues` blocks, as a GGUF file
/// stores an nn.Linear weight [out, in]. `multiply` reads the blocks and dequantises them right
/// before use (qgemm.c), so a product streams 2.6–8.5 bits a weight instead of 32.
public final class QuantizedMatrix: @unchecked Sendable {
    /// A ggml block format.
    public enum Format: Int32, CaseIterable, Sendable {
        case q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K

        var id: Int32 {
            switch self {
            case .q8_0: Int32(MYOPIA_QUANT_Q8_0)
            case .q4_0: Int32(MYOPIA_QUANT_Q4_0)
            case .q4_1: Int32(MYOPIA_QUANT_Q4_1)
            case .q5_0: Int32(MYOPIA_QUANT_Q5_0)
            case .q5_1: Int32(MYOPIA_QUANT_Q5_1)
            case .q2_K: Int32(MYOPIA_QUANT_Q2_K)
            case .q3_K: Int32(MYOPIA_QUANT_Q3_K)
            case .q4_K: Int32(MYOPIA_QUANT_Q4_K)
            case .q5_K: Int32(MYOPIA_QUANT_Q5_K)
            case .q6_K: Int32(MYOPIA_QUANT_Q6_K)
            }
        }

        /// Bytes of one block.
        public var blockBytes: Int { myopia_quant_block_bytes(id) }
        /// Values of one block: 32, or 256 for the K-quants.
        public var blockValues: Int { myopia_quant_block_values(id) }
    }

    public let format: Format
    public let rows: Int, columns: Int
    public let rowBytes: Int
    let bytes: UnsafeMutableRawPointer

    /// Copies `rows` rows of `columns` values (a multiple of the block's values), row r's blocks at
    /// `data` + r·rowBytes, from `row(r)`: the row of the file that becomes row r (a reordering of rows).
    public init(format: Format, rows: Int, columns: Int, data: UnsafeRawBufferPointer, row source: (Int) -> Int = { $0 }) {
        precondition(columns > 0 && columns % format.blockValues == 0 && rows > 0,
                     "QuantizedMatrix: columns must be a positive multiple of \(format.blockValues)")
        self.format = format
        self.rows = rows
        self.columns = columns
        rowBytes = columns / format.blockValues * format.blockBytes
        precondition(data.count == rows * rowBytes, "QuantizedMatrix: \(data.count) bytes for \(rows) × \(columns) in \(format)")
        bytes = .allocate(byteCount: rows * rowBytes, alignment: 64)
        for r in 0..<rows {
            (bytes + r * rowBytes).copyMemory(from: data.baseAddress! + source(r) * rowBytes, byteCount: rowBytes)
        }
    }

    deinit { bytes.deallocate() }

    /// Bytes held (what one product streams).
    public var byteCount: Int { rows * rowBytes }

    /// C[m × rows] = (accumulate ? C : 0) + A[m × columns] · Wᵀ (row stride lda, ldc). Rows of W are
    /// split between threads when `parallel`; every element is summed the same way for any m and
    /// any thread count. The GEMM kernel (`GEMM.kernel`) selects the path here too: portable, AVX2, or
    /// AVX-512 (the AVX2 sums, bit for bit, with wider registers).
    public func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                         accumulate: Bool, parallel: Bool = true) {
        precondition(m >= 0 && lda >= columns && ldc >= rows, "QuantizedMatrix.multiply: bad dimensions")
        guard m > 0 else { return }
        let threads = parallel ? Parallel.threadCount : 1
        let simd: Int32 = switch GEMM.kernel { case .portable: 0; case .avx512: 2; default: 1 }
        guard threads > 1, byteCount >= 1 << 15, rows >= 64 else {
            myopia_qgemm(format.id, simd, m, rows, columns, a, lda, bytes, rowBytes, c, ldc, accumulate ? 1 : 0)
            return
        }
        let band = (rows + threads - 1) / threads
        let args = (SendablePointer(a), SendablePointer(c), UnsafeRawPointer(bytes), self, m, lda, ldc, accumulate, band, simd)
        Parallel.forEachStatic(threads, args) { args, t in
            let (aP, cP, w, matrix, m, lda, ldc, accumulate, band, simd) = args
            let j0 = t * band, count = min(band, matrix.rows - j0)
            guard count > 0 else { return }
            myopia_qgemm(matrix.format.id, simd, m, count, matrix.columns, aP.pointer, lda, w + j0 * matrix.rowBytes,
                         matrix.rowBytes, cP.pointer + j0, ldc, accumulate ? 1 : 0)
        }
    }
}
