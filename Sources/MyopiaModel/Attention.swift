import Foundation
import MyopiaKernels

// Dimensions: B batch, T time, NH query heads, NKV key/value heads (NH = G·NKV; GPT-2: NKV = NH),
// HS head size, W = (NH + 2·NKV)·HS the width of one position's [q | k | v] (GPT-2: 3C), A = NH·HS.
// Query head h sits at columns h·HS of q, and reads key/value head h / G.

/// The shape of one layer's attention, and how its scores become probabilities: scaled (by
/// 1/√HS, or the family's query scale), soft-capped (cap·tanh(score/cap), Gemma 2), masked to the
/// causal window (keys t − W + 1 … t under a sliding window, else 0 … t), softmax.
struct AttentionShape {
    let nh: Int, nkv: Int, hs: Int
    /// What multiplies q·k.
    var scale: Float
    /// Soft-cap of the scaled scores (nil: none).
    var softcap: Float? = nil
    /// Sliding window W (nil: every earlier position).
    var window: Int? = nil
    var group: Int { nh / nkv }            // G: query heads per key/value head
    var width: Int { (nh + 2 * nkv) * hs } // W
    var out: Int { nh * hs }               // A
    var keyColumn: Int { nh * hs }         // where k starts in a [q | k | v] row
    var valueColumn: Int { (nh + nkv) * hs }

    init(nh: Int, nkv: Int, hs: Int) {
        self.nh = nh; self.nkv = nkv; self.hs = hs
        scale = 1 / Float(hs).squareRoot()
    }

    /// Layer l's attention in a model of `config`.
    init(_ config: ModelConfig, layer l: Int = 0) {
        self.init(nh: config.nHeads, nkv: config.kvHeads, hs: config.headSize)
        scale = config.queryScale
        softcap = config.attentionSoftcap.map { Float($0) }
        window = config.window(layer: l)
    }

    /// The first key a query at position `query` sees.
    @inline(__always) func firstKey(_ query: Int) -> Int {
        guard let window else { return 0 }
        return max(0, query - window + 1)
    }

    /// The scores the softmax reads, in place on keys lo..<keys: soft-capped and scaled when there
    /// is a cap (the softmax then scales by 1), else left for the softmax to scale.
    @inline(__always) private func cap(_ r: UnsafeMutablePointer<Float>, count: Int) -> Float {
        guard let softcap else { return scale }
        let k = scale / softcap
        for j in 0..<count { r[j] = softcap * Foundation.tanh(r[j] * k) }
        return 1
    }

    /// Query `query`'s row of raw scores q·k over keys 0..<keys (positions 0…) becomes its
    /// probabilities, entries outside the window 0; `statistics` (2 floats), if given, keeps the
    /// softmax's maximum and 1/Σ. Returns the log-partition.
    @inline(__always) @discardableResult
    func softmaxRow(_ row: UnsafeMutablePointer<Float>, query: Int, keys: Int,
                    statistics: UnsafeMutablePointer<Float>? = nil) -> Float {
        let lo = min(firstKey(query), keys), r = row + lo, n = keys - lo
        let s = cap(r, count: n)
        var z: Float = 0
        if let statistics { RowOps.softmax(r, count: n, scale: s, statistics: statistics) } else { z = RowOps.softmax(r, count: n, scale: s) }
        if lo > 0 { row.update(repeating: 0, count: lo) }
        return z
    }

    /// `softmaxRow` from the statistics it kept: bitwise its probabilities.
    @inline(__always)
    func recomputeRow(_ row: UnsafeMutablePointer<Float>, query: Int, keys: Int, statistics: UnsafePointer<Float>) {
        let lo = min(firstKey(query), keys), r = row + lo, n = keys - lo
        let s = cap(r, count: n)
        RowOps.softmaxRecompute(r, count: n, scale: s, statistics: statistics)
        if lo > 0 { row.update(repeating: 0, count: lo) }
    }

    /// In place over query `query`'s row: dp (∂L/∂probabilities, keys 0..<keys) becomes ∂L/∂(q·k),
    /// 0 outside the window. The soft-cap's derivative 1 − tanh² comes from the probabilities and the
    /// row's statistics (tanh = capped score / cap, capped score = log(p·Σ) + max).
    @inline(__always)
    func backwardRow(_ d: UnsafeMutablePointer<Float>, probs p: UnsafePointer<Float>, query: Int, keys: Int,
                     statistics: UnsafePointer<Float>?) {
        let lo = min(firstKey(query), keys), n = keys - lo
        if let softcap {
            guard let statistics else { preconditionFailure("a soft-capped row's backward reads its statistics") }
            RowOps.softmaxBackward(d + lo, probs: p + lo, count: n, scale: scale)
            let maxValue = statistics[0], logSum = -Foundation.log(statistics[1])
            for j in lo..<keys where p[j] > 0 {
                let t = (Foundation.log(p[j]) + logSum + maxValue) / softcap
                d[j] *= 1 - t * t
            }
        } else {
            RowOps.softmaxBackward(d + lo, probs: p + lo, count: n, scale: scale)
        }
        if lo > 0 { d.update(repeating: 0, count: lo) }
    }
}

/// Causal multi-head self-attention: o_t = Σ_{s≤t} a_ts v_s, a_ts = softmax_s(q_t·k_s / √HS).
///
/// Work is spread over (sequence, head) pairs; each runs single-threaded GEMMs over strips of
/// `stripRows` queries against the keys up to the strip's last query (the part of a causal T × T
/// product a strip needs; tiles above the diagonal are skipped). The probabilities a (B, NH, T, T)
/// are kept only when asked for (`probs` non-nil): otherwise a strip lives in per-thread scratch,
/// forward keeps each row's softmax statistics (its maximum and 1/Σ, 2 floats per row), and
/// backward rebuilds the strip from them, bitwise, after recomputing its q·kᵀ. Kept or not, every
/// result is the same to the bit: the same code runs on the same values either way.
enum Attention {
    /// Query rows per strip. A strip of scores (stripRows × T floats) and its gradient stay in L2.
    static let stripRows = 64

    /// The per-thread scratch (floats) one work item of forward or backward asks for: two strips and
    /// the group's diagonals. Both ask for the same, and both hand out items statically (every
    /// thread gets some), so one warm-up step sizes every thread's buffer for good.
    static func scratchFloats(t: Int, shape sh: AttentionShape) -> Int {
        2 * stripRows * t + 2 * sh.group * t
    }

    /// Strip [i0, i1) of an attention-like product, causal: c (rows × i1, row stride ldc) =
    /// x[i0..<i1] · y[0..<i1]ᵀ for keys j ≤ query i0 + r; the rest of each row is left unset or
    /// garbage (callers mask it). x and y are rows of HS floats with strides ldx and ldy.
    @inline(__always)
    static func causalStrip(_ c: UnsafeMutablePointer<Float>, ldc: Int, x: UnsafePointer<Float>, ldx: Int,
                            y: UnsafePointer<Float>, ldy: Int, hs: Int, i0: Int, i1: Int) {
        let rows = i1 - i0
        if i0 > 0 {
            GEMM.multiply(m: rows, n: i0, k: hs, a: x + i0 * ldx, lda: ldx, transA: false,
                          b: y, ldb: ldy, transB: true, c: c, ldc: ldc, accumulate: false, parallel: false)
        }
        GEMM.multiplyTriangular(.outputLower, m: rows, n: rows, k: hs, a: x + i0 * ldx, lda: ldx, transA: false,
                                b: y + i0 * ldy, ldb: ldy, transB: true, c: c + i0, ldc: ldc, accumulate: false)
    }

    /// out[i0..<i1] (rows × HS, row stride ldo) (+)= a · y[0..<i1] for a strip a (rows × i1, row
    /// stride lda) that is zero for keys j > i0 + r (zeros stored in its diagonal block).
    @inline(__always)
    static func stripTimesRows(_ out: UnsafeMutablePointer<Float>, ldo: Int, a: UnsafePointer<Float>, lda: Int,
                               y: UnsafePointer<Float>, ldy: Int, hs: Int, i0: Int, i1: Int, accumulate: Bool) {
        let rows = i1 - i0
        if i0 > 0 {
            GEMM.multiply(m: rows, n: hs, k: i0, a: a, lda: lda, transA: false, b: y, ldb: ldy, transB: false,
                          c: out, ldc: ldo, accumulate: accumulate, parallel: false)
        }
        GEMM.multiplyTriangular(.aLower, m: rows, n: hs, k: rows, a: a + i0, lda: lda, transA: false,
                                b: y + i0 * ldy, ldb: ldy, transB: false, c: out, ldc: ldo, accumulate: accumulate || i0 > 0)
    }

    /// out[0..<i1] (row stride ldo) (+)= aᵀ · x[i0..<i1] for a strip a as in `stripTimesRows`:
    /// keys before i0 always accumulate (earlier strips wrote them); keys i0..<i1 are written when
    /// `accumulate` is false (this strip is the first to reach them).
    @inline(__always)
    static func stripTransposedTimesRows(_ out: UnsafeMutablePointer<Float>, ldo: Int, a: UnsafePointer<Float>,
                                         lda: Int, x: UnsafePointer<Float>, ldx: Int, hs: Int, i0: Int, i1: Int,
                                         accumulate: Bool) {
        let rows = i1 - i0
        if i0 > 0 {
            GEMM.multiply(m: i0, n: hs, k: rows, a: a, lda: lda, transA: true, b: x + i0 * ldx, ldb: ldx,
                          transB: false, c: out, ldc: ldo, accumulate: true, parallel: false)
        }
        GEMM.multiplyTriangular(.aUpper, m: rows, n: hs, k: rows, a: a + i0, lda: lda, transA: true,
                                b: x + i0 * ldx, ldb: ldx, transB: false, c: out + i0 * ldo, ldc: ldo,
                                accumulate: accumulate)
    }

    /// z (B, T, A) and the softmax statistics (B, NH, T, 2) from qkv (B, T, W); with `probs`, also
    /// the probabilities (B, NH, T, T), entries above the diagonal 0. With the `selfOnly` pattern each
    /// position attends only to itself: probabilities = I (which it needs kept), z = v.
    static func forward(z: UnsafeMutablePointer<Float>, statistics: UnsafeMutablePointer<Float>,
                        probs: UnsafeMutablePointer<Float>?, qkv: UnsafePointer<Float>, b: Int, t: Int,
                        shape sh: AttentionShape, pattern kind: AttentionPattern = .causal) {
        precondition(kind == .causal || probs != nil, "self-only attention keeps its (identity) pattern")
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEachStatic(b * nh, (z, statistics, probs, qkv, t, sh, kind, hs, w, a, nh)) { args, item in
            let (z, statistics, probs, qkv, t, sh, kind, hs, w, a, nh) = args
            let bi = item / nh, h = item % nh, kvh = h / sh.group
            let base = qkv + bi * t * w
            let q = base + h * hs, k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let zh = z + bi * t * a + h * hs                                // (T, HS), row stride A
            let stats = statistics + item * t * 2                           // (T, 2)
            if kind == .selfOnly, let probs {
                let p = probs + item * t * t
                p.update(repeating: 0, count: t * t)
                for row in 0..<t {
                    p[row * t + row] = 1
                    stats[2 * row] = 0
                    stats[2 * row + 1] = 1
                    (zh + row * a).update(from: v + row * w, count: hs)
                }
                return
            }
            let scratch = ThreadScratch.attention(scratchFloats(t: t, shape: sh))
            var i0 = 0
            while i0 < t {
                let i1 = min(t, i0 + stripRows)
                // The strip's probabilities: kept rows of (T, T), or scratch (rows × i1).
                let (p, ld) = probs.map { ($0 + item * t * t + i0 * t, t) } ?? (scratch, i1)
                causalStrip(p, ldc: ld, x: q, ldx: w, y: k, ldy: w, hs: hs, i0: i0, i1: i1)
                for r in 0..<(i1 - i0) {
                    let row = p + r * ld, keys = i0 + r + 1
                    sh.softmaxRow(row, query: i0 + r, keys: keys, statistics: stats + 2 * (i0 + r))
                    if keys < ld { (row + keys).update(repeating: 0, count: ld - keys) }
                }
                // z[i0..<i1] = p · v[0..<i1]
                stripTimesRows(zh + i0 * a, ldo: a, a: p, lda: ld, y: v, ldy: w, hs: hs, i0: i0, i1: i1,
                               accumulate: false)
                i0 = i1
            }
        }
    }

    /// The probabilities (B, NH, T, T) of the last forward, rebuilt from qkv and the statistics it
    /// kept: bitwise those a forward with a kept pattern writes.
    static func rebuildPattern(_ probs: UnsafeMutablePointer<Float>, statistics: UnsafePointer<Float>,
                               qkv: UnsafePointer<Float>, b: Int, t: Int, shape sh: AttentionShape) {
        Parallel.forEach(b * sh.nh, (probs, statistics, qkv, t, sh)) { args, item in
            let (probs, statistics, qkv, t, sh) = args
            let bi = item / sh.nh, h = item % sh.nh, kvh = h / sh.group, w = sh.width
            let base = qkv + bi * t * w
            var i0 = 0
            while i0 < t {
                let i1 = min(t, i0 + stripRows)
                rebuildStrip(probs + item * t * t + i0 * t, ld: t, q: base + h * sh.hs, k: base + sh.keyColumn + kvh * sh.hs,
                             w: w, statistics: statistics + item * t * 2, shape: sh, i0: i0, i1: i1)
                i0 = i1
            }
        }
    }

    /// Strip [i0, i1) of one head's probabilities (row stride ld ≥ i1), from the statistics
    /// (T, 2) its forward kept: the forward's scores, then its softmax again. Entries right of the
    /// diagonal, up to ld, are 0.
    @inline(__always)
    static func rebuildStrip(_ p: UnsafeMutablePointer<Float>, ld: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                             w: Int, statistics: UnsafePointer<Float>, shape sh: AttentionShape, i0: Int, i1: Int) {
        causalStrip(p, ldc: ld, x: q, ldx: w, y: k, ldy: w, hs: sh.hs, i0: i0, i1: i1)
        for r in 0..<(i1 - i0) {
            let row = p + r * ld, keys = i0 + r + 1
            sh.recomputeRow(row, query: i0 + r, keys: keys, statistics: statistics + 2 * (i0 + r))
            if keys < ld { (row + keys).update(repeating: 0, count: ld - keys) }
        }
    }

    /// dqkv (B, T, W) (written) from dz (B, T, A). With `probs` (the forward's kept probabilities)
    /// the scores' gradients are written to `scoreGradients` (B, NH, T, T), entries above the
    /// diagonal 0; without, both are rebuilt strip by strip in per-thread scratch.
    ///
    /// dqkv is the ordinary gradient: the one the projection weights get. When `inputShare` < 1,
    /// `dqkvInput` receives the gradient the attention *input* gets instead: for keys and values,
    /// the diagonal term (t = s) plus `inputShare` times the off-diagonal terms from later queries
    /// (GradientFlow); queries are unchanged. A key/value head sums over the G query heads that read it.
    static func backward(dqkv: UnsafeMutablePointer<Float>, dz: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                         statistics: UnsafePointer<Float>, probs: UnsafePointer<Float>?,
                         scoreGradients: UnsafeMutablePointer<Float>?, b: Int, t: Int, shape sh: AttentionShape,
                         dqkvInput: UnsafeMutablePointer<Float>? = nil, inputShare: Float = 1) {
        precondition((probs == nil) == (scoreGradients == nil), "a kept pattern comes with its scores' gradients")
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        let args = (dqkv, dz, qkv, statistics, probs, scoreGradients, t, sh, dqkvInput, inputShare, hs, w, a, nh)
        Parallel.forEachStatic(b * sh.nkv, args) { args, item in
            let (dqkv, dz, qkv, statistics, probs, scoreGradients, t, sh, dqkvInput, inputShare, hs, w, a, nh) = args
            let bi = item / sh.nkv, kvh = item % sh.nkv
            let base = qkv + bi * t * w, dbase = dqkv + bi * t * w
            let k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let dk = dbase + sh.keyColumn + kvh * hs, dv = dbase + sh.valueColumn + kvh * hs
            // Scratch: a strip of probabilities and one of their gradients (when not kept), then the
            // diagonal p_ss and ds_ss of every head in the group (for a myopic flow's input share).
            let strip = stripRows * t, split = dqkvInput != nil
            let scratch = ThreadScratch.attention(scratchFloats(t: t, shape: sh))
            let diagonals = scratch + 2 * strip                            // (G, T) of p_ss, then (G, T) of ds_ss
            for g in 0..<sh.group {
                let h = kvh * sh.group + g, item = bi * nh + h
                let q = base + h * hs, dq = dbase + h * hs
                let dzh = dz + bi * t * a + h * hs                         // (T, HS), row stride A
                var i0 = 0
                while i0 < t {
                    let i1 = min(t, i0 + stripRows), rows = i1 - i0
                    let p: UnsafePointer<Float>, ds: UnsafeMutablePointer<Float>, ld: Int
                    if let probs, let scoreGradients {
                        p = probs + item * t * t + i0 * t
                        ds = scoreGradients + item * t * t + i0 * t
                        ld = t
                    } else {
                        rebuildStrip(scratch, ld: i1, q: q, k: k, w: w, statistics: statistics + item * t * 2,
                                     shape: sh, i0: i0, i1: i1)
                        p = UnsafePointer(scratch)
                        ds = scratch + strip
                        ld = i1
                    }
                    // dp (rows × i1) = dz[i0..<i1] · vᵀ, then the softmax backward into ds
                    causalStrip(ds, ldc: ld, x: dzh, ldx: a, y: v, ldy: w, hs: hs, i0: i0, i1: i1)
                    softmaxBackward(ds, probs: p, rows: rows, firstQuery: i0, keys: ld, probsStride: ld, shape: sh,
                                    statistics: statistics + item * t * 2 + 2 * i0)
                    // dq[i0..<i1] = ds · k ; dk (+)= dsᵀ · q[i0..<i1] ; dv (+)= pᵀ · dz[i0..<i1]
                    stripTimesRows(dq + i0 * w, ldo: w, a: ds, lda: ld, y: k, ldy: w, hs: hs, i0: i0, i1: i1,
                                   accumulate: false)
                    stripTransposedTimesRows(dk, ldo: w, a: ds, lda: ld, x: q, ldx: w, hs: hs, i0: i0, i1: i1,
                                             accumulate: g > 0)
                    stripTransposedTimesRows(dv, ldo: w, a: p, lda: ld, x: dzh, ldx: a, hs: hs, i0: i0, i1: i1,
                                             accumulate: g > 0)
                    if split {
                        for r in 0..<rows {
                            diagonals[g * t + i0 + r] = p[r * ld + i0 + r]
                            diagonals[(sh.group + g) * t + i0 + r] = ds[r * ld + i0 + r]
                        }
                    }
                    i0 = i1
                }
            }
            guard let dqkvInput else { return }
            let ibase = dqkvInput + bi * t * w
            for g in 0..<sh.group {
                let h = kvh * sh.group + g
                for s in 0..<t { (ibase + s * w + h * hs).update(from: dbase + s * w + h * hs, count: hs) }
            }
            inputShareOfKeysAndValues(dkIn: ibase + sh.keyColumn + kvh * hs, dvIn: ibase + sh.valueColumn + kvh * hs,
                       dk: dk, dv: dv, ld: w, rows: t, hs: hs, share: inputShare, group: sh.group) { g in
                // The diagonals as rows of stride 0: row r's diagonal is at r.
                HeadRows(q: base + (kvh * sh.group + g) * hs, qStride: w, ds: diagonals + (sh.group + g) * t, dsStride: 0,
                         p: diagonals + g * t, pStride: 0, dz: dz + bi * t * a + (kvh * sh.group + g) * hs, dzStride: a)
            }
        }
    }

    /// In place over `rows` query rows of `ds` (row stride `keys`): dscores = scale · p ⊙ (dp − Σ p·dp)
    /// (times the soft-cap's derivative where there is one), causal: row r (query firstQuery + r)
    /// keeps the keys of its window up to firstQuery + r and zeroes the rest. `probs` holds the same
    /// rows' probabilities (row stride probsStride) and `statistics` their softmax statistics (2
    /// floats a row), starting at query firstQuery.
    static func softmaxBackward(_ ds: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>, rows: Int,
                                firstQuery: Int, keys: Int, probsStride: Int, shape sh: AttentionShape,
                                statistics: UnsafePointer<Float>?) {
        for r in 0..<rows {
            let query = firstQuery + r, count = query + 1
            let dr = ds + r * keys
            sh.backwardRow(dr, probs: probs + r * probsStride, query: query, keys: count,
                           statistics: statistics.map { $0 + 2 * r })
            if count < keys { (dr + count).update(repeating: 0, count: keys - count) }
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
            scaledRow(dkIn + r * ld, dk + r * ld, beta, count: hs, accumulate: false)
            scaledRow(dvIn + r * ld, dv + r * ld, beta, count: hs, accumulate: false)
        }
        for g in 0..<group {
            let h = head(g)
            for r in 0..<rows {
                let dsDiag = rest * h.ds[r * h.dsStride + r], pDiag = rest * h.p[r * h.pStride + r]
                scaledRow(dkIn + r * ld, h.q + r * h.qStride, dsDiag, count: hs, accumulate: true)
                scaledRow(dvIn + r * ld, h.dz + r * h.dzStride, pDiag, count: hs, accumulate: true)
            }
        }
    }

    /// out[j] = s·x[j], or out[j] + s·x[j] when accumulating, for j < count: 16 lanes at a time, a
    /// product then a sum (no fused multiply-add), so every element rounds as the scalar form does.
    /// out may be x.
    @inline(__always)
    static func scaledRow(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ s: Float, count: Int,
                          accumulate: Bool) {
        var j = 0
        let o = UnsafeMutableRawPointer(out), xr = UnsafeRawPointer(x), sv = SIMD16<Float>(repeating: s)
        while j + 16 <= count {
            let product = sv * xr.loadUnaligned(fromByteOffset: 4 * j, as: SIMD16<Float>.self)
            let value = accumulate ? o.loadUnaligned(fromByteOffset: 4 * j, as: SIMD16<Float>.self) + product : product
            o.storeBytes(of: value, toByteOffset: 4 * j, as: SIMD16<Float>.self)
            j += 16
        }
        while j < count {
            out[j] = accumulate ? out[j] + s * x[j] : s * x[j]
            j += 1
        }
    }
}
