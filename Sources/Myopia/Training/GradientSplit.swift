import Foundation

/// The training signal split by where it comes from (DESIGN §4): g_vanilla = g_myopic + g_future,
/// where g_future = g_vanilla − g_myopic is the part of the parameter gradient that exists only
/// because later losses reach earlier positions. Measured on one batch, per parameter group.
public struct GradientSplitStats: Codable, Equatable, Sendable {
    public var vanillaNorm: Double
    public var myopicNorm: Double
    public var futureNorm: Double
    /// cos(g_myopic, g_future); 0 when either is zero.
    public var cosine: Double

    enum CodingKeys: String, CodingKey {
        case cosine
        case vanillaNorm = "vanilla_norm", myopicNorm = "myopic_norm", futureNorm = "future_norm"
    }
}

public enum GradientSplit {
    /// Parameter groups: `embeddings` (wte, wpe or the input projection), each layer's `h.L.attn`
    /// (ln_1 and attn.*) and `h.L.mlp` (ln_2 and mlp.*), and `final` (ln_f and any output head).
    public static func group(of name: String) -> String {
        if name.hasPrefix("h.") {
            let parts = name.split(separator: ".")
            let layer = parts.count > 1 ? parts[1] : "?"
            let part = parts.count > 2 ? parts[2] : ""
            return part == "ln_1" || part == "attn" ? "h.\(layer).attn" : "h.\(layer).mlp"
        }
        if name.hasPrefix("wte") || name.hasPrefix("wpe") || name.hasPrefix("input_") { return "embeddings" }
        return "final"
    }

    /// Runs `pass` (which must zero the gradients, run forward and backward on one fixed batch)
    /// under the vanilla and the myopic flow and compares the two gradients. The model's flow is
    /// restored; its gradients are left zeroed.
    public static func measure(_ model: Transformer, pass: () -> Void) -> [String: GradientSplitStats] {
        let saved = model.flow
        defer { model.flow = saved; model.params.zeroGrads() }
        let store = model.params
        model.flow = .vanilla
        pass()
        let vanilla = store.gradArray()
        model.flow = .myopic
        pass()
        var sums: [String: (vv: Double, mm: Double, ff: Double, mf: Double)] = [:]
        for e in store.entries {
            var s = sums[group(of: e.name)] ?? (0, 0, 0, 0)
            for i in e.offset..<(e.offset + e.count) {
                let v = Double(vanilla[i]), m = Double(store.grads[i]), f = v - m
                s.vv += v * v; s.mm += m * m; s.ff += f * f; s.mf += m * f
            }
            sums[group(of: e.name)] = s
        }
        return sums.mapValues { s in
            let denom = (s.mm * s.ff).squareRoot()
            return GradientSplitStats(vanillaNorm: s.vv.squareRoot(), myopicNorm: s.mm.squareRoot(),
                                      futureNorm: s.ff.squareRoot(), cosine: denom > 0 ? s.mf / denom : 0)
        }
    }
}
