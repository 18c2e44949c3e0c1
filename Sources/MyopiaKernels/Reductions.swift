import CMyopiaKernels

/// This thread's scratch memory (`myopia_thread_scratch`) as `count` values of T: allocated only
/// when it must grow, so a reduction's block partials cost no allocation after the first step. Valid
/// until the thread's next call: hold it only where no other caller on this thread can run.
func threadScratch<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
    myopia_thread_scratch(max(count, 1) * MemoryLayout<T>.stride)!.bindMemory(to: T.self, capacity: max(count, 1))
}

/// Per-thread scratch for callers outside this module (CMyopiaKernels/scratch.c).
public enum ThreadScratch {
    /// `count` floats of the calling thread's attention buffer: 64-byte aligned, grown when too small
    /// (the only time it allocates), valid until the same thread's next call. Attention's work items
    /// hold their strips of scores in it while their GEMMs, which use other buffers, run.
    public static func attention(_ count: Int) -> UnsafeMutablePointer<Float> {
        myopia_attention_scratch(max(count, 1) * MemoryLayout<Float>.stride)!.bindMemory(to: Float.self, capacity: max(count, 1))
    }
}

extension RowOps {
    /// dst[j] += sum over r of src[r*cols + j] (bias gradients). Deterministic like layerNormBackward:
    /// fixed row blocks -> partials -> summed in block order.
    public static func addColumnSums(into dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, rows: Int, cols: Int) {
        guard rows > 0, cols > 0 else { return }
        let blocks = (rows + reductionBlockRows - 1) / reductionBlockRows
        let partials = threadScratch(Float.self, count: blocks * cols)
        let pP = SendablePointer(partials), srcP = SendablePointer(src)
        let body = cols & ~7
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEach(blocks, (pP, srcP, rows, cols, body)) { args, block in
            let (pP, srcP, rows, cols, body) = args
            let part = pP.pointer + block * cols
            let r0 = block * reductionBlockRows, r1 = min(rows, r0 + reductionBlockRows)
            let first = srcP.pointer + r0 * cols
            part.update(from: first, count: cols)
            for r in (r0 + 1)..<max(r1, r0 + 1) {
                let row = srcP.pointer + r * cols
                var j = 0
                while j < body { store8(load8(part + j) + load8(row + j), part + j); j += 8 }
                for q in body..<cols { part[q] += row[q] }
            }
        }
        addBlockPartials(into: dst, partials, blocks: blocks, stride: cols, cols: cols)
    }

    /// dst[r*cols + j] = row[j] for every r (bias broadcast before an accumulating GEMM).
    public static func broadcastRows(_ dst: UnsafeMutablePointer<Float>, row: UnsafePointer<Float>, rows: Int, cols: Int) {
        guard cols > 0 else { return }
        for r in 0..<max(rows, 0) { (dst + r * cols).update(from: row, count: cols) }
    }

    /// Elements per block of sumOfSquares (fixed: the summation order never depends on threads).
    static let sumOfSquaresBlock = 1 << 16

    /// sum of x[i]^2 accumulated in Double (gradient norms); deterministic.
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        guard count > 0 else { return 0 }
        let blocks = (count + sumOfSquaresBlock - 1) / sumOfSquaresBlock
        if blocks == 1 { return sumOfSquaresBlockValue(x, count: count) }
        let partials = threadScratch(Double.self, count: blocks)
        let pP = SendablePointer(partials), xP = SendablePointer(x)
        Parallel.forEach(blocks, (pP, xP, count)) { args, block in
            let (pP, xP, count) = args
            let start = block * sumOfSquaresBlock
            pP.pointer[block] = sumOfSquaresBlockValue(xP.pointer + start,
                                                       count: min(sumOfSquaresBlock, count - start))
        }
        var total = 0.0
        for block in 0..<blocks { total += partials[block] }
        return total
    }

    @inline(__always)
    static func sumOfSquaresBlockValue(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        var i = 0
        while i + 4 <= count {
            let a = Double(x[i]), b = Double(x[i + 1]), c = Double(x[i + 2]), d = Double(x[i + 3])
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
            i += 4
        }
        while i < count { let a = Double(x[i]); s0 += a * a; i += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// Elements per work item of `fill` and `scale`: large buffers (gradients) stream on every core.
    static let streamChunk = 1 << 16

    /// x[i] = value for i in 0..<count, spread over the threads.
    public static func fill(_ x: UnsafeMutablePointer<Float>, count: Int, with value: Float) {
        let xP = SendablePointer(x)
        Parallel.forEachChunk(of: count, chunk: streamChunk, (xP, value)) { args, start, end in
            let (xP, value) = args
            (xP.pointer + start).update(repeating: value, count: end - start)
        }
    }

    /// x[i] *= s for i in 0..<count, spread over the threads.
    public static func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
        let xP = SendablePointer(x)
        Parallel.forEachChunk(of: count, chunk: streamChunk, (xP, s)) { args, start, end in
            let (xP, s) = args
            for i in start..<end { xP.pointer[i] *= s }
        }
    }
}
