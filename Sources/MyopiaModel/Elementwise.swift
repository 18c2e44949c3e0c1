import MyopiaKernels

/// Small fused elementwise passes the layers need; parallel over rows. Their parallel bodies capture
/// nothing (their inputs travel as an args tuple), so they allocate nothing (`Parallel.forEach`).
enum Elementwise {
    /// out[r, :] = inp[r, :] + row[:]  (out may alias inp).
    static func addRowVector(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                             row: UnsafePointer<Float>, rows: Int, cols: Int) {
        forEachRowChunk(rows, (out, inp, row, cols)) { args, r0, r1 in
            let (out, inp, row, cols) = args
            for r in r0..<r1 {
                let o = out + r * cols, x = inp + r * cols
                for j in 0..<cols { o[j] = x[j] + row[j] }
            }
        }
    }

    /// out[i] += inp[i].
    static func add(into out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, count: Int) {
        Parallel.forEachChunk(of: count, chunk: 1 << 16, (out, inp)) { args, lo, hi in
            let (out, inp) = args
            for i in lo..<hi { out[i] += inp[i] }
        }
    }

    /// Runs body(args, r0, r1) over row ranges; chunking is fixed by `rows`, never by thread count.
    /// Allocates nothing when `body` captures nothing (everything it needs travels in `args`).
    static func forEachRowChunk<Args>(_ rows: Int, rowsPerChunk: Int = 64, _ args: Args,
                                      _ body: @escaping (Args, Int, Int) -> Void) {
        Parallel.forEachChunk(of: rows, chunk: rowsPerChunk, args, body)
    }
}
