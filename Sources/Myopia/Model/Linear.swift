import MyopiaKernels

// Dimensions: N rows (B·T), IC input features, OC output features.
// GPT-2's Conv1D stores its weight as [IC, OC]: y = x·W + b.

/// A dense layer as GPT-2 stores it (Conv1D, weight [in, out]).
enum Linear {
    /// out (N, OC) = inp (N, IC) · weight (IC, OC) + bias (OC).
    static func forward(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        n: Int, inC: Int, outC: Int) {
        if let bias {
            RowOps.broadcastRows(out, row: bias, rows: n, cols: outC)
        }
        GEMM.multiply(m: n, n: outC, k: inC, a: inp, lda: inC, transA: false,
                      b: weight, ldb: outC, transB: false, c: out, ldc: outC, accumulate: bias != nil)
    }

    /// out (N, OC) = residual (N, OC) + inp · weight + bias: a projection written straight into the
    /// residual stream, with no temporary.
    static func forwardResidual(out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>,
                                inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>, n: Int, inC: Int, outC: Int) {
        Elementwise.addRowVector(out: out, inp: residual, row: bias, rows: n, cols: outC)
        GEMM.multiply(m: n, n: outC, k: inC, a: inp, lda: inC, transA: false,
                      b: weight, ldb: outC, transB: false, c: out, ldc: outC, accumulate: true)
    }

    /// dInp (N, IC) = dOutForInput · weightᵀ (written, or added when `accumulateInput`);
    /// dWeight (IC, OC) += inpᵀ · dOut; dBias (OC) += Σ_rows dOut. `dOutForInput` defaults to dOut;
    /// myopic flows send the input a different gradient than the weights.
    static func backward(dInp: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                         dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
                         inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         n: Int, inC: Int, outC: Int, accumulateInput: Bool = false,
                         dOutForInput: UnsafePointer<Float>? = nil) {
        if let dInp {
            GEMM.multiply(m: n, n: inC, k: outC, a: dOutForInput ?? dOut, lda: outC, transA: false,
                          b: weight, ldb: outC, transB: true, c: dInp, ldc: inC, accumulate: accumulateInput)
        }
        GEMM.multiply(m: inC, n: outC, k: n, a: inp, lda: inC, transA: true,
                      b: dOut, ldb: outC, transB: false, c: dWeight, ldc: outC, accumulate: true)
        if let dBias {
            RowOps.addColumnSums(into: dBias, dOut, rows: n, cols: outC)
        }
    }
}

/// Small fused elementwise passes the layers need; parallel over rows.
enum Elementwise {
    /// out[r, :] = inp[r, :] + row[:]  (out may alias inp).
    static func addRowVector(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                             row: UnsafePointer<Float>, rows: Int, cols: Int) {
        forEachRowChunk(rows) { r0, r1 in
            for r in r0..<r1 {
                let o = out + r * cols, x = inp + r * cols
                for j in 0..<cols { o[j] = x[j] + row[j] }
            }
        }
    }

    /// out[i] += inp[i].
    static func add(into out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        let chunk = 1 << 16
        Parallel.forEach((count + chunk - 1) / chunk) { c in
            let lo = c * chunk, hi = min(count, lo + chunk)
            for i in lo..<hi { out[i] += inp[i] }
        }
    }

    /// Runs body(r0, r1) over row ranges; chunking is fixed by `rows`, never by thread count.
    static func forEachRowChunk(_ rows: Int, rowsPerChunk: Int = 64, _ body: (Int, Int) -> Void) {
        let chunks = (rows + rowsPerChunk - 1) / rowsPerChunk
        Parallel.forEach(chunks) { c in
            body(c * rowsPerChunk, min(rows, (c + 1) * rowsPerChunk))
        }
    }
}
