import CMyopiaKernels

extension RowOps {
    // gelu(x) = 0.5·x·(1 + tanh(z)), z = √(2/π)·(x + 0.044715·x³)  ==  x · σ(2z) = x / (1 + e^{−2z})
    static let geluSqrt2OverPi: Float = 0.7978845608028654
    static let geluCubic: Float = 0.044715

    /// GELU, tanh form (PyTorch gelu(approximate='tanh') / HF "gelu_new"):
    /// 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))). Max abs error vs double ≤ 1e-6 on |x| ≤ 10. Parallel.
    public static func geluForward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        let outP = SendablePointer(out), inP = SendablePointer(input)
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEachChunk(of: count, chunk: elementsPerItem, (outP, inP)) { args, start, end in
            let (outP, inP) = args
            let x = inP.pointer, y = outP.pointer
            if usesAVX512 { return myopia_gelu_forward_avx512(y + start, x + start, end - start) }
            if usesAVX2 { return myopia_gelu_forward_avx2(y + start, x + start, end - start) }
            var i = start
            while i + 8 <= end {
                store8(gelu8(load8(x + i)), y + i)
                i += 8
            }
            if i < end { storePartial8(gelu8(loadPartial8(x + i, end - i, fill: 0)), y + i, end - i) }
        }
    }

    /// dInput = dOut * gelu'(input)  (WRITES, not accumulates; dInput may alias dOut). Parallel.
    public static func geluBackward(dInput: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, count: Int) {
        let dxP = SendablePointer(dInput), inP = SendablePointer(input), dyP = SendablePointer(dOut)
        Parallel.forEachChunk(of: count, chunk: elementsPerItem, (dxP, inP, dyP)) { args, start, end in
            let (dxP, inP, dyP) = args
            let x = inP.pointer, dy = dyP.pointer, dx = dxP.pointer
            if usesAVX512 { return myopia_gelu_backward_avx512(dx + start, x + start, dy + start, end - start) }
            if usesAVX2 { return myopia_gelu_backward_avx2(dx + start, x + start, dy + start, end - start) }
            var i = start
            while i + 8 <= end {
                store8(load8(dy + i) * geluDerivative8(load8(x + i)), dx + i)
                i += 8
            }
            if i < end {
                let n = end - i
                storePartial8(loadPartial8(dy + i, n, fill: 0) * geluDerivative8(loadPartial8(x + i, n, fill: 0)),
                              dx + i, n)
            }
        }
    }

    @inline(__always)
    static func gelu8(_ x: Float8) -> Float8 {
        let z = (x * x * geluCubic + 1) * x * geluSqrt2OverPi
        return x / (exp8(z * -2) + 1)
    }

    /// d/dx [x·σ(2z)] = σ + 2·x·z′·σ·(1−σ), with 1−σ = e·σ, e = e^{−2z}; z′ = √(2/π)(1 + 3·0.044715·x²).
    @inline(__always)
    static func geluDerivative8(_ x: Float8) -> Float8 {
        let x2 = x * x
        let z = (x2 * geluCubic + 1) * x * geluSqrt2OverPi
        var u = z * -2
        u = u.replacing(with: 80, where: u .> 80)  // keeps e·σ² finite where σ underflows
        let e = exp8(u)
        let s = 1 / (e + 1)
        let dz = (x2 * (3 * geluCubic) + 1) * geluSqrt2OverPi
        return s + x * dz * 2 * (e * s) * s  // (e·s) first: e alone may be ~1e34
    }
}
