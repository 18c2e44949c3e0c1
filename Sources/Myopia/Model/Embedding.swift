// Dimensions: B batch, T time, C d_model, V vocab.

/// Token plus learned position embedding (GPT-2 `wte`, `wpe`).
enum Embedding {
    /// out (B, T, C) = wte[tokens[b, t]] + wpe[t]. Tokens are checked against V when data is loaded.
    static func forward(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
                        wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>, b: Int, t: Int, c: Int) {
        Elementwise.forEachRowChunk(b * t) { r0, r1 in
            for r in r0..<r1 {
                let o = out + r * c
                let e = wte + Int(tokens[r]) * c
                let p = wpe + (r % t) * c
                for j in 0..<c { o[j] = e[j] + p[j] }
            }
        }
    }

    /// dWte[tokens] += dOut, dWpe[t] += dOut. Serial: several positions may share a token, and a fixed
    /// order keeps the sums bitwise reproducible.
    static func backward(dWte: UnsafeMutablePointer<Float>, dWpe: UnsafeMutablePointer<Float>,
                         dOut: UnsafePointer<Float>, tokens: UnsafePointer<Int32>, b: Int, t: Int, c: Int) {
        for r in 0..<(b * t) {
            let d = dOut + r * c
            let e = dWte + Int(tokens[r]) * c
            let p = dWpe + (r % t) * c
            for j in 0..<c {
                e[j] += d[j]
                p[j] += d[j]
            }
        }
    }
}
