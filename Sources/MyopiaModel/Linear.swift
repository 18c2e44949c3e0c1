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



/// A projection inside a block, as its checkpoint stores it: GPT-2's Conv1D (weight [in, out]) or
/// PyTorch's nn.Linear (weight [out, in], Llama), with an optional bias. Its output may be a column
/// slice of a wider buffer (q, k and v share one row of [q | k | v]): `ld` is that buffer's row
/// stride. A bias needs a full-width output (ld = outC).
struct Dense {
    let weight: Int
    let bias: Int?
    let inC: Int, outC: Int
    /// true: nn.Linear [out, in]; false: Conv1D [in, out].
    let outIn: Bool

    /// out (n, outC; row stride ld) = inp (n, inC) · W (+ bias), or += with `accumulate`. W is read
    /// from `quantized` where it holds this weight (nn.Linear layout only), else from `w`.
    func forward(w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ld: Int, inp: UnsafePointer<Float>,
                 n: Int, accumulate: Bool = false, parallel: Bool = true, quantized: QuantizedWeights? = nil) {
        var add = accumulate
        if let bias {
            precondition(!accumulate, "a biased projection writes its output")
            if ld == outC {
                RowOps.broadcastRows(out, row: w + bias, rows: n, cols: outC)
            } else {
                for r in 0..<n { (out + r * ld).update(from: w + bias, count: outC) }
            }
            add = true
        }
        multiply(w: w, out: out, ld: ld, inp: inp, n: n, accumulate: add, parallel: parallel, quantized: quantized)
    }

    /// out (+)= inp · W, from the quantised copy of W where there is one.
    private func multiply(w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ld: Int, inp: UnsafePointer<Float>,
                          n: Int, accumulate: Bool, parallel: Bool, quantized: QuantizedWeights?) {
        if let q = quantized?.matrices[weight] {
            precondition(outIn && q.rows == outC && q.columns == inC, "a quantised weight is an nn.Linear [out, in]")
            q.multiply(m: n, a: inp, lda: inC, c: out, ldc: ld, accumulate: accumulate, parallel: parallel)
            return
        }
        GEMM.multiply(m: n, n: outC, k: inC, a: inp, lda: inC, transA: false, b: w + weight,
                      ldb: outIn ? inC : outC, transB: outIn, c: out, ldc: ld, accumulate: accumulate, parallel: parallel)
    }

    /// out (n, outC) = residual + inp · W + bias: a projection written straight into the residual stream.
    func forwardResidual(w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>,
                         inp: UnsafePointer<Float>, n: Int, parallel: Bool = true, quantized: QuantizedWeights? = nil) {
        if let bias {
            Elementwise.addRowVector(out: out, inp: residual, row: w + bias, rows: n, cols: outC)
        } else if out != UnsafeMutablePointer(mutating: residual) {
            out.update(from: residual, count: n * outC)
        }
        multiply(w: w, out: out, ld: outC, inp: inp, n: n, accumulate: true, parallel: parallel, quantized: quantized)
    }

    /// dInp (n, inC) = dOut (n, outC; row stride ld) · Wᵀ, or += with `accumulate`.
    func backwardInput(w: UnsafePointer<Float>, dInp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, ld: Int,
                       n: Int, accumulate: Bool, parallel: Bool = true) {
        GEMM.multiply(m: n, n: inC, k: outC, a: dOut, lda: ld, transA: false, b: w + weight,
                      ldb: outIn ? inC : outC, transB: !outIn, c: dInp, ldc: inC, accumulate: accumulate,
                      parallel: parallel)
    }

    /// dW += inpᵀ · dOut (Conv1D) or dOutᵀ · inp (nn.Linear); dBias += Σ_rows dOut.
    func backwardParameters(g: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, ld: Int,
                            inp: UnsafePointer<Float>, n: Int) {
        if outIn {
            GEMM.multiply(m: outC, n: inC, k: n, a: dOut, lda: ld, transA: true, b: inp, ldb: inC, transB: false,
                          c: g + weight, ldc: inC, accumulate: true)
        } else {
            GEMM.multiply(m: inC, n: outC, k: n, a: inp, lda: inC, transA: true, b: dOut, ldb: ld, transB: false,
                          c: g + weight, ldc: outC, accumulate: true)
        }
        if let bias {
            if ld == outC {
                RowOps.addColumnSums(into: g + bias, dOut, rows: n, cols: outC)
            } else {
                // A slice of a wider row ([q | k | v]): summed over rows in order.
                let gb = g + bias
                for r in 0..<n {
                    let d = dOut + r * ld
                    for j in 0..<outC { gb[j] += d[j] }
                }
            }
        }
    }
}

/// Weights that cached decoding reads quantised (`Transformer.quantizedDecoding`), each under the
/// offset of the fp32 parameter it stands for. The fp32 parameters stay as they are: every other
/// computation reads them.
public struct QuantizedWeights: @unchecked Sendable {
    public var matrices: [Int: QuantizedMatrix]

    public init(_ matrices: [Int: QuantizedMatrix] = [:]) { self.matrices = matrices }

    /// Bytes of the quantised matrices.
    public var byteCount: Int { matrices.values.reduce(0) { $0 + $1.byteCount } }
}
