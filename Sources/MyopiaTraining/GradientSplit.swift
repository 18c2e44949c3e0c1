import Foundation
import MyopiaModel

/// The training signal split by where it comes from (docs/DESIGN.md §4): g_vanilla = g_myopic + g_future,
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
    /// Parameter groups: `embeddings` (wte, wpe, embed_tokens or the input projection), each layer's
    /// `h.L.attn` (its first norm and attention) and `h.L.mlp` (its second norm and MLP), and `final`
    /// (the final norm and any output head). Llama layers use the same group names.
    public static func group(of name: String) -> String {
        let parts = name.split(separator: ".")
        for prefix in [["h"], ["model", "layers"]] where parts.starts(with: prefix.map { Substring($0) }) {
            let layer = parts.count > prefix.count ? parts[prefix.count] : "?"
            let part = parts.count > prefix.count + 1 ? parts[prefix.count + 1] : ""
            let attention = ["ln_1", "attn", "input_layernorm", "self_attn"].contains(part)
            return attention ? "h.\(layer).attn" : "h.\(layer).mlp"
        }
        if name.hasPrefix("wte") || name.hasPrefix("wpe") || name.hasPrefix("input_") || name.hasPrefix("model.embed_tokens") {
            return "embeddings"
        }
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
