import Foundation
import MyopiaKernels

// Dimensions: B batch, T time, C d_model, NH heads, HS head size (C = NH·HS).
// qkv (B, T, 3C) holds [q | k | v] per position, head h at columns h·HS ..< (h+1)·HS of each part.

/// Causal multi-head self-attention: o_t = Σ_{s≤t} a_ts v_s, a_ts = softmax_s(q_t·k_s / √HS).
/// Work is spread over the B·NH (sequence, head) pairs; each pair runs single-threaded GEMMs.
enum Attention {
    /// z (B, T, C) and probs (B, NH, T, T) from qkv (B, T, 3C). Entries above the diagonal are 0.
    /// With the `selfOnly` pattern each position attends only to itself: probs = I, z = v.
    static func forward(z: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        qkv: UnsafePointer<Float>, b: Int, t: Int, c: Int, nh: Int,
                        pattern: AttentionPattern = .causal) {
        let hs = c / nh
        let scale = 1 / Float(hs).squareRoot()
        Parallel.forEach(b * nh) { item in
            let bi = item / nh, h = item % nh
            let base = qkv + bi * t * 3 * c
            let q = base + h * hs, k = base + c + h * hs, v = base + 2 * c + h * hs
            let p = probs + item * t * t                                    // (T, T)
            if pattern == .selfOnly {
                p.update(repeating: 0, count: t * t)
                for row in 0..<t {
                    p[row * t + row] = 1
                    (z + (bi * t + row) * c + h * hs).update(from: v + row * 3 * c, count: hs)
                }
                return
            }
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
    ///
    /// dqkv is the ordinary gradient: the one the c_attn weights and bias get. When `inputShare` < 1,
    /// `dqkvInput` receives the gradient the attention *input* gets instead: for keys and values,
    /// the diagonal term (t = s) plus `inputShare` times the off-diagonal terms from later queries
    /// (GradientFlow); queries are unchanged.
    static func backward(dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         dz: UnsafePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                         b: Int, t: Int, c: Int, nh: Int,
                         dqkvInput: UnsafeMutablePointer<Float>? = nil, inputShare: Float = 1) {
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
            guard let dqkvInput else { return }
            // The input's share: dk_s = β·dk_s + (1−β)·ds_ss·q_s and dv_s = β·dv_s + (1−β)·p_ss·dz_s,
            // where ds_ss·q_s and p_ss·dz_s are the diagonal (t = s) terms of dk_s and dv_s.
            let ibase = dqkvInput + bi * t * 3 * c
            let beta = inputShare, rest = 1 - inputShare
            for s in 0..<t {
                let row = s * 3 * c
                let dsDiag = ds[s * t + s], pDiag = p[s * t + s]
                for j in 0..<hs {
                    ibase[row + h * hs + j] = dq[row + j]
                    ibase[row + c + h * hs + j] = beta * dk[row + j] + rest * (dsDiag * q[row + j])
                    ibase[row + 2 * c + h * hs + j] = beta * dv[row + j] + rest * (pDiag * dzh[s * c + j])
                }
            }
        }
    }
}
