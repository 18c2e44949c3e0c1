import Foundation
import MyopiaKernels

// Dimensions: B batch, T time, NH query heads, NKV key/value heads (NH = G·NKV; GPT-2: NKV = NH),
// HS head size, W = (NH + 2·NKV)·HS the width of one position's [q | k | v] (GPT-2: 3C), A = NH·HS.
// Query head h sits at columns h·HS of q, and reads key/value head h / G.

/// The shape of one layer's attention.
struct AttentionShape {
    let nh: Int, nkv: Int, hs: Int
    var group: Int { nh / nkv }            // G: query heads per key/value head
    var width: Int { (nh + 2 * nkv) * hs } // W
    var out: Int { nh * hs }               // A
    var keyColumn: Int { nh * hs }         // where k starts in a [q | k | v] row
    var valueColumn: Int { (nh + nkv) * hs }

    init(nh: Int, nkv: Int, hs: Int) {
        self.nh = nh; self.nkv = nkv; self.hs = hs
    }

    init(_ config: ModelConfig) {
        self.init(nh: config.nHeads, nkv: config.kvHeads, hs: config.headSize)
    }
}

/// Causal multi-head self-attention: o_t = Σ_{s≤t} a_ts v_s, a_ts = softmax_s(q_t·k_s / √HS).
/// Work is spread over (sequence, head) pairs; each runs single-threaded GEMMs.
enum Attention {
    /// z (B, T, A) and probs (B, NH, T, T) from qkv (B, T, W). Entries above the diagonal are 0.
    /// With the `selfOnly` pattern each position attends only to itself: probs = I, z = v.
    static func forward(z: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        qkv: UnsafePointer<Float>, b: Int, t: Int, shape sh: AttentionShape,
                        pattern: AttentionPattern = .causal) {
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        let scale = 1 / Float(hs).squareRoot()
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEach(b * nh, (z, probs, qkv, t, sh, pattern, hs, w, a, nh, scale)) { args, item in
            let (z, probs, qkv, t, sh, pattern, hs, w, a, nh, scale) = args
            let bi = item / nh, h = item % nh, kvh = h / sh.group
            let base = qkv + bi * t * w
            let q = base + h * hs, k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let p = probs + item * t * t                                    // (T, T)
            let zh = z + bi * t * a + h * hs                                // (T, HS), row stride A
            if pattern == .selfOnly {
                p.update(repeating: 0, count: t * t)
                for row in 0..<t {
                    p[row * t + row] = 1
                    (zh + row * a).update(from: v + row * w, count: hs)
                }
                return
            }
            // scores (T, T) = q (T, HS) · kᵀ, lower triangle only (tiles above it are skipped)
            GEMM.multiplyTriangular(.outputLower, m: t, n: t, k: hs, a: q, lda: w, transA: false,
                                    b: k, ldb: w, transB: true, c: p, ldc: t, accumulate: false)
            for row in 0..<t {
                let r = p + row * t
                RowOps.softmax(r, count: row + 1, scale: scale)
                if row + 1 < t { (r + row + 1).update(repeating: 0, count: t - row - 1) }
            }
            // z (T, HS) = probs (T, T) · v (T, HS); probs is lower triangular: row t sums s ≤ t only
            GEMM.multiplyTriangular(.aLower, m: t, n: hs, k: t, a: p, lda: t, transA: false,
                                    b: v, ldb: w, transB: false, c: zh, ldc: a, accumulate: false)
        }
    }

    /// dqkv (B, T, W) (written) from dz (B, T, A); `scratch` holds B·NH·T·T floats.
    ///
    /// dqkv is the ordinary gradient: the one the projection weights get. When `inputShare` < 1,
    /// `dqkvInput` receives the gradient the attention *input* gets instead: for keys and values,
    /// the diagonal term (t = s) plus `inputShare` times the off-diagonal terms from later queries
    /// (GradientFlow); queries are unchanged. A key/value head sums over the G query heads that read it.
    static func backward(dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         dz: UnsafePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                         b: Int, t: Int, shape sh: AttentionShape,
                         dqkvInput: UnsafeMutablePointer<Float>? = nil, inputShare: Float = 1) {
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        let scale = 1 / Float(hs).squareRoot()
        let args = (dqkv, scratch, dz, qkv, probs, t, sh, dqkvInput, inputShare, hs, w, a, nh, scale)
        Parallel.forEach(b * sh.nkv, args) { args, item in
            let (dqkv, scratch, dz, qkv, probs, t, sh, dqkvInput, inputShare, hs, w, a, nh, scale) = args
            let bi = item / sh.nkv, kvh = item % sh.nkv
            let base = qkv + bi * t * w, dbase = dqkv + bi * t * w
            let k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let dk = dbase + sh.keyColumn + kvh * hs, dv = dbase + sh.valueColumn + kvh * hs
            for g in 0..<sh.group {
                let h = kvh * sh.group + g, first = g == 0
                let q = base + h * hs, dq = dbase + h * hs
                let p = probs + (bi * nh + h) * t * t                      // (T, T)
                let ds = scratch + (bi * nh + h) * t * t                   // (T, T)
                let dzh = dz + bi * t * a + h * hs                         // (T, HS), row stride A
                // Causal: probs and dscores are lower triangular (zeros stored), so every product
                // below skips their upper half.
                // dprobs (T, T) = dz · vᵀ (lower triangle) ; dv (T, HS) (+)= probsᵀ · dz
                GEMM.multiplyTriangular(.outputLower, m: t, n: t, k: hs, a: dzh, lda: a, transA: false,
                                        b: v, ldb: w, transB: true, c: ds, ldc: t, accumulate: false)
                GEMM.multiplyTriangular(.aUpper, m: t, n: hs, k: t, a: p, lda: t, transA: true,
                                        b: dzh, ldb: a, transB: false, c: dv, ldc: w, accumulate: !first)
                softmaxBackward(ds, probs: p, rows: t, firstQuery: 0, keys: t, probsStride: t, scale: scale)
                // dq (T, HS) = dscores · k ; dk (T, HS) (+)= dscoresᵀ · q
                GEMM.multiplyTriangular(.aLower, m: t, n: hs, k: t, a: ds, lda: t, transA: false,
                                        b: k, ldb: w, transB: false, c: dq, ldc: w, accumulate: false)
                GEMM.multiplyTriangular(.aUpper, m: t, n: hs, k: t, a: ds, lda: t, transA: true,
                                        b: q, ldb: w, transB: false, c: dk, ldc: w, accumulate: !first)
            }
            guard let dqkvInput else { return }
            let ibase = dqkvInput + bi * t * w
            for g in 0..<sh.group {
                let h = kvh * sh.group + g
                for s in 0..<t { (ibase + s * w + h * hs).update(from: dbase + s * w + h * hs, count: hs) }
            }
            inputShareOfKeysAndValues(dkIn: ibase + sh.keyColumn + kvh * hs, dvIn: ibase + sh.valueColumn + kvh * hs,
                       dk: dk, dv: dv, ld: w, rows: t, hs: hs, share: inputShare, group: sh.group) { g in
                let h = kvh * sh.group + g, item = bi * nh + h
                return HeadRows(q: base + h * hs, qStride: w, ds: scratch + item * t * t, dsStride: t,
                                p: probs + item * t * t, pStride: t, dz: dz + bi * t * a + h * hs, dzStride: a)
            }
        }
    }

    /// In place over `rows` query rows of `ds` (row stride `keys`): dscores = scale · p ⊙ (dp − Σ p·dp),
    /// causal: row r (query firstQuery + r) keeps keys 0…firstQuery + r and zeroes the rest.
    static func softmaxBackward(_ ds: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>, rows: Int,
                                firstQuery: Int, keys: Int, probsStride: Int, scale: Float) {
        for r in 0..<rows {
            let query = firstQuery + r
            let pr = probs + query * probsStride, dr = ds + r * keys
            var dot: Float = 0
            for j in 0...query { dot += pr[j] * dr[j] }
            for j in 0...query { dr[j] = scale * pr[j] * (dr[j] - dot) }
            if query + 1 < keys { (dr + query + 1).update(repeating: 0, count: keys - query - 1) }
        }
    }

    /// One query head's rows for `inputShare`, all starting at the first row's position s0:
    /// q (row stride qStride), dscores and probs positioned so that row r's diagonal (s0 + r, s0 + r)
    /// is at r·stride + r, and dz.
    struct HeadRows {
        let q: UnsafePointer<Float>, qStride: Int
        let ds: UnsafePointer<Float>, dsStride: Int
        let p: UnsafePointer<Float>, pStride: Int
        let dz: UnsafePointer<Float>, dzStride: Int
    }

    /// The key/value gradient a myopic flow sends to the attention input, for one key/value head
    /// over `rows` positions: dk_s = β·dk_s + (1−β)·Σ_g ds_g[s,s]·q_g[s] and
    /// dv_s = β·dv_s + (1−β)·Σ_g p_g[s,s]·dz_g[s], where dk and dv are the ordinary gradients and
    /// the sums run over the G query heads that read this key/value head (their diagonal terms are
    /// the position's own contribution). dkIn/dvIn may be dk/dv.
    static func inputShareOfKeysAndValues(dkIn: UnsafeMutablePointer<Float>, dvIn: UnsafeMutablePointer<Float>,
                           dk: UnsafePointer<Float>, dv: UnsafePointer<Float>, ld: Int, rows: Int, hs: Int,
                           share beta: Float, group: Int, head: (Int) -> HeadRows) {
        let rest = 1 - beta
        for r in 0..<rows {
            for j in 0..<hs {
                dkIn[r * ld + j] = beta * dk[r * ld + j]
                dvIn[r * ld + j] = beta * dv[r * ld + j]
            }
        }
        for g in 0..<group {
            let h = head(g)
            for r in 0..<rows {
                let dsDiag = rest * h.ds[r * h.dsStride + r], pDiag = rest * h.p[r * h.pStride + r]
                let q = h.q + r * h.qStride, dz = h.dz + r * h.dzStride
                for j in 0..<hs {
                    dkIn[r * ld + j] += dsDiag * q[j]
                    dvIn[r * ld + j] += pDiag * dz[j]
                }
            }
        }
    }
}
