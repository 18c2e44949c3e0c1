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

    /// logits (N, V) become dlogits in place: scale · (softmax(logits) − onehot(target)).
    /// `scale` is dL/dℓ_r (1/N for a mean loss).
    static func backward(logits: UnsafeMutablePointer<Float>, logZ: UnsafePointer<Float>,
                         targets: UnsafePointer<Int32>, rows: Int, v: Int, scale: Float) {
        Elementwise.forEachRowChunk(rows, rowsPerChunk: 16, (logits, logZ, targets, v, scale)) { args, r0, r1 in
            let (logits, logZ, targets, v, scale) = args
            for r in r0..<r1 {
                let x = logits + r * v
                if targets[r] < 0 {
                    x.update(repeating: 0, count: v)
                    continue
                }
                let z = logZ[r]
                for j in 0..<v { x[j] -= z }
                RowOps.exp(x, x, count: v)
                for j in 0..<v { x[j] *= scale }
                x[Int(targets[r])] -= scale
            }
        }
    }
}
