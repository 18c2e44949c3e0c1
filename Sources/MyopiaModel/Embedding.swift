// Dimensions: B batch, T time, C d_model, V vocab.

/// Token embedding plus, for GPT-2, the learned position embedding (`wte`, `wpe`). The rotary
/// families have no `wpe`: their positions enter through RoPE. Gemma scales the token embedding by
/// √C (`scale`; 1 elsewhere).
enum Embedding {
    /// out (B, T, C) = wte[tokens[b, t]]·scale (+ wpe[t]). Tokens are checked against V when data is loaded.
    static func forward(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
                        wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>?, b: Int, t: Int, c: Int, scale: Float = 1) {
        Elementwise.forEachRowChunk(b * t, (out, tokens, wte, wpe, t, c, scale)) { args, r0, r1 in
            let (out, tokens, wte, wpe, t, c, scale) = args
            for r in r0..<r1 {
                let o = out + r * c
                let e = wte + Int(tokens[r]) * c
                if let wpe {
                    let p = wpe + (r % t) * c
                    for j in 0..<c { o[j] = e[j] + p[j] }
                } else if scale != 1 {
                    for j in 0..<c { o[j] = e[j] * scale }
                } else {
                    o.update(from: e, count: c)
                }
            }
        }
    }

    /// dWte[tokens] += dOut·scale (and dWpe[t] += dOut). Serial: several positions may share a token,
    /// and a fixed order keeps the sums bitwise reproducible.
    static func backward(dWte: UnsafeMutablePointer<Float>, dWpe: UnsafeMutablePointer<Float>?,
                         dOut: UnsafePointer<Float>, tokens: UnsafePointer<Int32>, b: Int, t: Int, c: Int,
                         scale: Float = 1, paddingRow: Int? = nil) {
        for r in 0..<(b * t) {
            let d = dOut + r * c
            let token = Int(tokens[r])
            let e = dWte + token * c
            if token == paddingRow {
                // nn.Embedding(padding_idx:): the padding row gets no gradient from its lookups.
            } else if scale != 1 {
                for j in 0..<c { e[j] += d[j] * scale }
            } else {
                for j in 0..<c { e[j] += d[j] }
            }
            if let dWpe {
                let p = dWpe + (r % t) * c
                for j in 0..<c { p[j] += d[j] }
            }
        }
    }
}
