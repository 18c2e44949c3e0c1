import Foundation
import MyopiaKernels

// Dimensions: B batch, T time, C d_model, NH heads, HS head size (C = NH·HS).
// qkv (B, T, 3C) holds [q | k | v] per position, head h at columns h·HS ..< (h+1)·HS of each part.

/// Causal multi-head self-attention: o_t = Σ_{s≤t} a_ts v_s, a_ts = softmax_s(q_t·k_s / √HS).
/// Work is spread over the B·NH (sequence, head) pairs; each pair runs single-threaded GEMMs.
enum Attention {
    /// z (B, T, C) and probs (B, NH, T, T) from qkv (B, T, 3C). Entries above the diagonal are 0.
    static func forward(z: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        qkv: UnsafePointer<Float>, b: Int, t: Int, c: Int, nh: Int) {
        let hs = c / nh
        let scale = 1 / Float(hs).squareRoot()
        Parallel.forEach(b * nh) { item in
            let bi = item / nh, h = item % nh
            let base = qkv + bi * t * 3 * c
            let q = base + h * hs, k = base + c + h * hs, v = base + 2 * c + h * hs
            let p = probs + item * t * t                                    // (T, T)
            // scores (T, T) = q (T, HS) · kᵀ
            GEMM.multiply(m: t, n: t, k: hs, a: q, lda: 3 * c, transA: false,
                          b: k, ldb: 3 * c, transB: true, c: p, ldc: t, accumulate: false, parallel: false)
            for row in 0..<t {
                let r = p + row * t
                RowOps.softmax(r, count: row + 1, scale: scale)
                if row + 1 < t { (r + row + 1).update(repeating: 0, count: t - row - 1) }
            }
            // z (T, HS) = probs (T, T) · v (T, HS)
            GEMM.multiply(m: t, n: hs, k: t, a: p, lda: t, transA: false,
                          b: v, ldb: 3 * c, transB: false, c: z + bi * t * c + h * hs, ldc: c,
                          accumulate: false, parallel: false)
        }
    }

    /// dqkv (B, T, 3C) (written) from dz (B, T, C); `scratch` holds B·NH·T·T floats.
    static func backward(dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         dz: UnsafePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                         b: Int, t: Int, c: Int, nh: Int) {
        let hs = c / nh
        let scale = 1 / Float(hs).squareRoot()
        Parallel.forEach(b * nh) { item in
            let bi = item / nh, h = item % nh
            let base = qkv + bi * t * 3 * c
            let q = base + h * hs, k = base + c + h * hs, v = base + 2 * c + h * hs
            let dbase = dqkv + bi * t * 3 * c
            let dq = dbase + h * hs, dk = dbase + c + h * hs, dv = dbase + 2 * c + h * hs
            let p = probs + item * t * t                                    // (T, T)
            let ds = scratch + item * t * t                                 // (T, T)
            let dzh = dz + bi * t * c + h * hs                              // (T, HS), row stride C
            // dprobs (T, T) = dz · vᵀ ; dv (T, HS) = probsᵀ · dz
            GEMM.multiply(m: t, n: t, k: hs, a: dzh, lda: c, transA: false,
                          b: v, ldb: 3 * c, transB: true, c: ds, ldc: t, accumulate: false, parallel: false)
            GEMM.multiply(m: t, n: hs, k: t, a: p, lda: t, transA: true,
                          b: dzh, ldb: c, transB: false, c: dv, ldc: 3 * c, accumulate: false, parallel: false)
            // softmax backward, row by row: dscores = scale · p ⊙ (dprobs − Σ_j p_j dprobs_j)
            for row in 0..<t {
                let pr = p + row * t, dr = ds + row * t
                var dot: Float = 0
                for j in 0...row { dot += pr[j] * dr[j] }
                for j in 0...row { dr[j] = scale * pr[j] * (dr[j] - dot) }
                if row + 1 < t { (dr + row + 1).update(repeating: 0, count: t - row - 1) }
            }
            // dq (T, HS) = dscores · k ; dk (T, HS) = dscoresᵀ · q
            GEMM.multiply(m: t, n: hs, k: t, a: ds, lda: t, transA: false,
                          b: k, ldb: 3 * c, transB: false, c: dq, ldc: 3 * c, accumulate: false, parallel: false)
            GEMM.multiply(m: t, n: hs, k: t, a: ds, lda: t, transA: true,
                          b: q, ldb: 3 * c, transB: false, c: dk, ldc: 3 * c, accumulate: false, parallel: false)
        }
    }
}
