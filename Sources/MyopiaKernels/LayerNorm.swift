import CMyopiaKernels
import Foundation

extension RowOps {
    /// Rows per block of a cross-row reduction (dWeight, dBias, column sums). Fixed, so the
    /// summation order never depends on the thread count.
    static let reductionBlockRows = 32

    /// LayerNorm over rows of width cols (PyTorch semantics, biased variance, eps inside sqrt):
    /// out = (x - mean) * rstd * weight + bias; writes mean[r], rstd[r]. Parallel over rows.
    public static func layerNormForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, rows: Int, cols: Int, eps: Float) {
        guard rows > 0, cols > 0 else { return }
        let outP = SendablePointer(out), meanP = SendablePointer(mean), rstdP = SendablePointer(rstd)
        let inP = SendablePointer(input), wP = SendablePointer(weight), bP = SendablePointer(bias)
        let rowsPerItem = max(1, elementsPerItem / (4 * cols))
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        let args = (outP, meanP, rstdP, inP, wP, bP, rows, cols, eps, rowsPerItem)
        Parallel.forEach((rows + rowsPerItem - 1) / rowsPerItem, args) { args, item in
            let (outP, meanP, rstdP, inP, wP, bP, rows, cols, eps, rowsPerItem) = args
            let r0 = item * rowsPerItem
            for r in r0..<min(rows, r0 + rowsPerItem) {
                layerNormRow(out: outP.pointer + r * cols, mean: meanP.pointer + r, rstd: rstdP.pointer + r,
                             x: inP.pointer + r * cols, weight: wP.pointer, bias: bP.pointer,
                             cols: cols, eps: eps)
            }
        }
    }

    @inline(__always)
    static func layerNormRow(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                             rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                             weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, cols: Int, eps: Float) {
        let body = cols & ~7
        var s8 = Float8()
        var i = 0
        while i < body { s8 += load8(x + i); i += 8 }
        var s = horizontalSum(s8)
        for j in body..<cols { s += x[j] }
        let m = s / Float(cols)
        // Two-pass variance: accurate when |mean| >> std.
        var v8 = Float8()
        i = 0
        while i < body { let d = load8(x + i) - m; v8 += d * d; i += 8 }
        var v = horizontalSum(v8)
        for j in body..<cols { let d = x[j] - m; v += d * d }
        let rs = 1 / (v / Float(cols) + eps).squareRoot()
        mean.pointee = m
        rstd.pointee = rs
        i = 0
        while i < body {
            store8((load8(x + i) - m) * rs * load8(weight + i) + load8(bias + i), out + i)
            i += 8
        }
        for j in body..<cols { out[j] = (x[j] - m) * rs * weight[j] + bias[j] }
    }

    /// Backward of layerNormForward. ACCUMULATES: dInput += ..., dWeight += ..., dBias += ...
    /// The dWeight/dBias reduction over rows is deterministic whatever the thread count:
    /// fixed row blocks (independent of threadCount) -> partials -> summed in a fixed order.
    public static func layerNormBackward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
        dBias: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, cols: Int) {
        guard rows > 0, cols > 0 else { return }
        let blocks = (rows + reductionBlockRows - 1) / reductionBlockRows
        // partials[block] = [dWeight part (cols) | dBias part (cols)], in this thread's scratch
        let partials = threadScratch(Float.self, count: blocks * 2 * cols)
        let pP = SendablePointer(partials), dInP = SendablePointer(dInput), dOutP = SendablePointer(dOut)
        let inP = SendablePointer(input), wP = SendablePointer(weight)
        let meanP = SendablePointer(mean), rstdP = SendablePointer(rstd)
        let args = (pP, dInP, dOutP, inP, wP, meanP, rstdP, rows, cols)
        Parallel.forEach(blocks, args) { args, block in
            let (pP, dInP, dOutP, inP, wP, meanP, rstdP, rows, cols) = args
            let dW = pP.pointer + block * 2 * cols, dB = dW + cols
            dW.initialize(repeating: 0, count: 2 * cols)
            let r0 = block * reductionBlockRows
            for r in r0..<min(rows, r0 + reductionBlockRows) {
                layerNormBackwardRow(dx: dInP.pointer + r * cols, dW: dW, dB: dB, dy: dOutP.pointer + r * cols,
                                     x: inP.pointer + r * cols, weight: wP.pointer,
                                     mean: meanP.pointer[r], rstd: rstdP.pointer[r], cols: cols)
            }
        }
        addBlockPartials(into: dWeight, partials, blocks: blocks, stride: 2 * cols, cols: cols)
        addBlockPartials(into: dBias, partials + cols, blocks: blocks, stride: 2 * cols, cols: cols)
    }

    @inline(__always)
    static func layerNormBackwardRow(dx: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>,
                                     dB: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                     x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     mean: Float, rstd: Float, cols: Int) {
        let body = cols & ~7
        // Row means of dnorm = dy * w and of dnorm * xhat.
        var a8 = Float8(), b8 = Float8()
        var i = 0
        while i < body {
            let dnorm = load8(dy + i) * load8(weight + i)
            let xhat = (load8(x + i) - mean) * rstd
            a8 += dnorm
            b8 += dnorm * xhat
            i += 8
        }
        var a = horizontalSum(a8), b = horizontalSum(b8)
        for j in body..<cols {
            let dnorm = dy[j] * weight[j]
            a += dnorm
            b += dnorm * ((x[j] - mean) * rstd)
        }
        let dnormMean = a / Float(cols), dnormNormMean = b / Float(cols)
        i = 0
        while i < body {
            let g = load8(dy + i)
            let xhat = (load8(x + i) - mean) * rstd
            let dnorm = g * load8(weight + i)
            store8(load8(dB + i) + g, dB + i)
            store8(load8(dW + i) + xhat * g, dW + i)
            store8(load8(dx + i) + (dnorm - dnormMean - xhat * dnormNormMean) * rstd, dx + i)
            i += 8
        }
        for j in body..<cols {
            let g = dy[j]
            let xhat = (x[j] - mean) * rstd
            let dnorm = g * weight[j]
            dB[j] += g
            dW[j] += xhat * g
            dx[j] += (dnorm - dnormMean - xhat * dnormNormMean) * rstd
        }
    }

    /// dst[j] += ((p_0[j] + p_1[j]) + …) for block partials p_b = partials + b*stride.
    static func addBlockPartials(into dst: UnsafeMutablePointer<Float>, _ partials: UnsafePointer<Float>,
                                 blocks: Int, stride: Int, cols: Int) {
        let body = cols & ~7
        var j = 0
        while j < body {
            var s = load8(partials + j)
            for blk in 1..<max(blocks, 1) { s += load8(partials + blk * stride + j) }
            store8(load8(dst + j) + s, dst + j)
            j += 8
        }
        for j in body..<cols {
            var s = partials[j]
            for blk in 1..<max(blocks, 1) { s += partials[blk * stride + j] }
            dst[j] += s
        }
    }
}
