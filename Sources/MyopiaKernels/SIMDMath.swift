// SIMD8<Float> building blocks shared by the row operations.
//
// This module is compiled without FMA/AVX target features, so everything here is written as plain
// `a * b + c` on SIMD8<Float> (never `.addingProduct`, which becomes one libm call per lane), and
// avoids the stdlib SIMD calls that do not inline (pointwiseMin/Max, clamped, min()/max(),
// SIMD squareRoot). Rounding uses the 1.5·2^23 magic-number trick (baseline x86-64 has no roundps).

@usableFromInline typealias Float8 = SIMD8<Float>

@inline(__always) @usableFromInline
func load8(_ p: UnsafePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

@inline(__always) @usableFromInline
func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
}

/// Loads count < 8 floats, the other lanes set to `fill`.
@inline(__always) @usableFromInline
func loadPartial8(_ p: UnsafePointer<Float>, _ count: Int, fill: Float) -> Float8 {
    var v = Float8(repeating: fill)
    for i in 0..<count { v[i] = p[i] }
    return v
}

@inline(__always) @usableFromInline
func storePartial8(_ v: Float8, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    for i in 0..<count { p[i] = v[i] }
}

/// Lane-wise maximum without the out-of-line `pointwiseMax`.
@inline(__always) @usableFromInline
func max8(_ a: Float8, _ b: Float8) -> Float8 { a.replacing(with: b, where: b .> a) }

/// Largest lane, by halving (no out-of-line `.max()`).
@inline(__always) @usableFromInline
func horizontalMax(_ v: Float8) -> Float {
    let l = v.lowHalf, h = v.highHalf
    let m4 = l.replacing(with: h, where: h .> l)
    let a = m4[0] > m4[1] ? m4[0] : m4[1]
    let b = m4[2] > m4[3] ? m4[2] : m4[3]
    return a > b ? a : b
}

/// Sum of the lanes in a fixed order (deterministic).
@inline(__always) @usableFromInline
func horizontalSum(_ v: Float8) -> Float {
    let h = v.lowHalf + v.highHalf
    return (h[0] + h[2]) + (h[1] + h[3])
}

/// e^x for 8 lanes. Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial
/// (Cephes expf coefficients), scale by 2^n built in the exponent bits in two halves so that n in
/// [-126, 128] never leaves the normal range. Max relative error ~1.2e-7 on [-87, 88].
/// x < ln(FLT_MIN) (−87.34, -inf included) gives 0; x > ln(FLT_MAX) gives +inf; NaN stays NaN.
@inline(__always) @usableFromInline
func exp8(_ x: Float8) -> Float8 {
    let hi: Float = 88.72283905206835
    let lo: Float = -87.33654475055310
    var xc = x.replacing(with: hi, where: x .> hi)
    xc = xc.replacing(with: lo, where: xc .< lo)
    let magic: Float = 12_582_912  // 1.5 · 2^23: adding it rounds to an integer
    let t = xc * 1.44269504088896341 + magic
    let n = t - magic
    var r = xc - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = r * 1.9875691500e-4 + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * (r * r) + r + 1
    let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let n1 = ni &>> 1
    let n2 = ni &- n1
    let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: Float8.self)
    let s2 = unsafeBitCast((n2 &+ 127) &<< 23, to: Float8.self)
    var y = p * s1 * s2
    y = y.replacing(with: 0, where: x .< lo)
    y = y.replacing(with: .infinity, where: x .> hi)
    return y
}
