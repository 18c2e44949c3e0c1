import CMyopiaKernels
import Foundation

/// Row-wise fp32 operations: vectorised exp, softmax, layernorm, GELU and the reductions that
/// backward passes need. Reductions over rows use fixed row blocks (independent of the thread
/// count) summed in a fixed order, so results are bitwise identical for any thread count.
public enum RowOps {
    /// Elements per parallel work item for element-wise operations.
    static let elementsPerItem = 1 << 15

    /// True when exp, softmax and GELU run the AVX2+FMA C code (else the portable SIMD8 Swift code):
    /// where the GEMM kernel is an FMA one (so MYOPIA_KERNEL=portable makes them portable too).
    static var usesAVX2: Bool { GEMM.usesFMA && !forcePortable }
    /// True when they run the AVX-512 C code: where the GEMM kernel is the AVX-512 one. Its results are
    /// bitwise the AVX2 code's (the same operations per element; softmax sums in 8 lanes as AVX2 does).
    static var usesAVX512: Bool { GEMM.kernel == .avx512 && !forcePortable }

    /// Forces the portable Swift row operations (tests of the portable path).
    nonisolated(unsafe) static var forcePortable = false

    /// y[i] = exp(x[i]); y may equal x. SIMD polynomial, max relative error ≤ 2e-7 on [-87, 88];
    /// large negative inputs give 0 (not NaN/denormal garbage), -inf gives 0.
    public static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        if usesAVX512 { return myopia_exp_avx512(x, y, count) }
        if usesAVX2 { return myopia_exp_avx2(x, y, count) }
        var i = 0
        while i + 8 <= count {
            store8(exp8(load8(x + i)), y + i)
            i += 8
        }
        if i < count {
            storePartial8(exp8(loadPartial8(x + i, count - i, fill: 0)), y + i, count - i)
        }
    }

    /// In place: x[0..<count] = softmax(scale * x). Returns log(sum_j exp(scale*x_j)) (the log-partition
    /// of the scaled input, using the max-shift for stability) so callers can form cross-entropy.
    /// count == 0 returns -inf. Like PyTorch, a row whose scaled maximum is ±inf gives NaN.
    @discardableResult
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float = 1) -> Float {
        guard count > 0 else { return -.infinity }
        let (maxValue, sum) = softmaxInPlace(x, count: count, scale: scale)
        return maxValue + Foundation.log(sum)
    }

    /// `softmax` that stores the row's statistics instead: statistics[0] = max_j scale·x_j and
    /// statistics[1] = 1 / Σ_j exp(scale·x_j − max), from which `softmaxRecompute` rebuilds the row
    /// bitwise. count ≥ 1.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float,
                               statistics: UnsafeMutablePointer<Float>) {
        precondition(count > 0, "softmax of an empty row")
        let (maxValue, sum) = softmaxInPlace(x, count: count, scale: scale)
        statistics[0] = maxValue
        statistics[1] = 1 / sum
    }

    /// In place: x[0..<count] = exp(scale·x − max) / Σ from the statistics `softmax(_:count:scale:statistics:)`
    /// stored for the same input: every value is bitwise the one it wrote (the same operations in
    /// the same order, on the AVX2 and the portable path alike).
    public static func softmaxRecompute(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float,
                                        statistics: UnsafePointer<Float>) {
        guard count > 0 else { return }
        let maxValue = statistics[0], inverse = statistics[1]
        if usesAVX512 { return myopia_softmax_recompute_avx512(x, count, scale, maxValue, inverse) }
        if usesAVX2 { return myopia_softmax_recompute_avx2(x, count, scale, maxValue, inverse) }
        let tail = count & 7, body = count - tail
        var i = 0
        while i < body {
            var v = load8(x + i)
            if scale != 1 { v *= scale }
            store8(exp8(v - maxValue) * inverse, x + i)
            i += 8
        }
        if tail > 0 {
            if scale != 1 { for j in body..<count { x[j] *= scale } }
            let e = exp8(loadPartial8(x + body, tail, fill: -.infinity) - maxValue)
            storePartial8(e * inverse, x + body, tail)
        }
    }

    /// In place: d[j] = scale · p[j] · (d[j] − Σ_i p[i]·d[i]) for j < count, the backward of a
    /// softmax row p (scaled: attention's scores are q·k/√HS) from d = ∂L/∂p.
    public static func softmaxBackward(_ d: UnsafeMutablePointer<Float>, probs p: UnsafePointer<Float>, count: Int,
                                       scale: Float) {
        let body = count & ~7
        var dot8 = Float8()
        var j = 0
        while j < body { dot8 += load8(p + j) * load8(d + j); j += 8 }
        var dot = horizontalSum(dot8)
        for i in body..<count { dot += p[i] * d[i] }
        let scale8 = Float8(repeating: scale), dot8v = Float8(repeating: dot)
        j = 0
        while j < body { store8(scale8 * load8(p + j) * (load8(d + j) - dot8v), d + j); j += 8 }
        for i in body..<count { d[i] = scale * p[i] * (d[i] - dot) }
    }

    /// The softmax itself, in place; returns (max_j scale·x_j, Σ_j exp(scale·x_j − max)). count ≥ 1.
    private static func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float) -> (Float, Float) {
        if usesAVX2 {
            var maxValue: Float = 0
            let sum = usesAVX512 ? myopia_softmax_avx512(x, count, scale, &maxValue) : myopia_softmax_avx2(x, count, scale, &maxValue)
            return (maxValue, sum)
        }
        let tail = count & 7, body = count - tail
        // Pass 1: scale in place and find the maximum.
        var max8v = Float8(repeating: -.infinity)
        var i = 0
        if scale == 1 {
            while i < body {
                max8v = max8(max8v, load8(x + i))
                i += 8
            }
        } else {
            while i < body {
                let v = load8(x + i) * scale
                store8(v, x + i)
                max8v = max8(max8v, v)
                i += 8
            }
        }
        if tail > 0 {
            if scale != 1 { for j in body..<count { x[j] *= scale } }
            max8v = max8(max8v, loadPartial8(x + body, tail, fill: -.infinity))
        }
        let maxValue = horizontalMax(max8v)
        // Pass 2: exponentiate the shifted values and sum them.
        var sum8 = Float8()
        i = 0
        while i < body {
            let e = exp8(load8(x + i) - maxValue)
            store8(e, x + i)
            sum8 += e
            i += 8
        }
        if tail > 0 {
            let e = exp8(loadPartial8(x + body, tail, fill: -.infinity) - maxValue)
            storePartial8(e, x + body, tail)
            sum8 += e
        }
        let sum = horizontalSum(sum8)
        // Pass 3: normalise.
        let inverse = 1 / sum
        i = 0
        while i < body {
            store8(load8(x + i) * inverse, x + i)
            i += 8
        }
        for j in body..<count { x[j] *= inverse }
        return (maxValue, sum)
    }
}
