import Foundation
import MyopiaKernels

// Dimensions: N rows (B·T), V vocab.

/// Softmax cross-entropy over logits rows: ℓ_r = log Σ_j exp(x_rj) − x_r,target.
/// A negative target (`ignoreIndex`) marks a position with no loss and no gradient.
public enum CrossEntropy {
    public static let ignoreIndex: Int32 = -1

    /// Work items for the forward pass; each owns one V-sized row of scratch. Fixed, so results do
    /// not depend on the thread count.
    public static let chunks = 16

    /// rowLoss (N) and logZ (N) from logits (N, V), which are left unchanged.
    public static func forward(rowLoss: UnsafeMutablePointer<Float>, logZ: UnsafeMutablePointer<Float>,
                        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                        rows: Int, v: Int, scratch: UnsafeMutablePointer<Float>) {
        let perChunk = (rows + chunks - 1) / chunks
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEach(chunks, (rowLoss, logZ, logits, targets, rows, v, scratch, perChunk)) { args, chunk in
            let (rowLoss, logZ, logits, targets, rows, v, scratch, perChunk) = args
            let row = scratch + chunk * v
            let lo = min(rows, chunk * perChunk), hi = min(rows, lo + perChunk)
            for r in lo..<hi {
                row.update(from: logits + r * v, count: v)
                let z = RowOps.softmax(row, count: v)
                logZ[r] = z
                rowLoss[r] = targets[r] < 0 ? 0 : z - logits[r * v + Int(targets[r])]
            }
        }
    }

    /// In place: x = cap·tanh(x/cap) over `count` values (Gemma 2's final-logit soft-cap, in
    /// Hugging Face's order of operations).
    static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (x, cap)) { args, i0, i1 in
            let (x, cap) = args
            for i in i0..<i1 { x[i] = Foundation.tanh(x[i] / cap) * cap }
        }
    }

    /// logits (N, V) become dlogits in place: scale · (softmax(logits) − onehot(target)).
    /// `scale` is dL/dℓ_r (1/N for a mean loss). With `softcap`, the logits are the capped ones and
    /// the gradient is carried back through the cap: times 1 − (logit/cap)².
    static func backward(logits: UnsafeMutablePointer<Float>, logZ: UnsafePointer<Float>,
                         targets: UnsafePointer<Int32>, rows: Int, v: Int, scale: Float, softcap: Float? = nil) {
        Elementwise.forEachRowChunk(rows, rowsPerChunk: 16, (logits, logZ, targets, v, scale, softcap)) { args, r0, r1 in
            let (logits, logZ, targets, v, scale, softcap) = args
            for r in r0..<r1 {
                let x = logits + r * v
                if targets[r] < 0 {
                    x.update(repeating: 0, count: v)
                    continue
                }
                let z = logZ[r]
                if let cap = softcap {
                    let target = Int(targets[r])
                    for j in 0..<v {
                        let capped = x[j], t = capped / cap
                        let d = scale * (Foundation.exp(capped - z) - (j == target ? 1 : 0))
                        x[j] = d * (1 - t * t)
                    }
                    continue
                }
                for j in 0..<v { x[j] -= z }
                RowOps.exp(x, x, count: v)
                for j in 0..<v { x[j] *= scale }
                x[Int(targets[r])] -= scale
            }
        }
    }
}
