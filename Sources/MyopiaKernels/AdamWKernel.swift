import CMyopiaKernels
import Foundation

/// The constants of one AdamW step over a stretch of the parameter buffer (see CMyopiaKernels/optim.c
/// for the exact arithmetic, which is `torch.optim.AdamW`'s single-tensor path).
public struct AdamWConstants: Sendable {
    /// 1: gradients unchanged; else g ← g·gradScale first, stored back (gradient clipping).
    public var gradScale: Float
    /// 1 − lr·weight_decay, or 1 for a parameter that does not decay.
    public var decay: Float
    public var beta1: Float, beta2: Float, eps: Float
    /// lr / (1 − β1ᵗ) and √(1 − β2ᵗ).
    public var stepSize: Float, biasCorrection2Sqrt: Float
    /// The scalar C path even where AVX2 exists (tests: the two agree bit for bit).
    public var portable = false

    public init(gradScale: Float, decay: Float, beta1: Double, beta2: Double, eps: Double, lr: Double, step: Int) {
        self.gradScale = gradScale
        self.decay = decay
        self.beta1 = Float(beta1)
        self.beta2 = Float(beta2)
        self.eps = Float(eps)
        stepSize = Float(lr / (1 - Foundation.pow(beta1, Double(step))))
        biasCorrection2Sqrt = Float((1 - Foundation.pow(beta2, Double(step))).squareRoot())
        self.lerpWeight = Float(1 - beta1)
        self.oneMinusBeta2 = Float(1 - beta2)
    }

    let lerpWeight: Float, oneMinusBeta2: Float
}

extension RowOps {
    /// Elements per work item of `adamW`.
    static let adamWChunk = 1 << 15

    /// One fused AdamW update of w, g, m, v (each `count` floats), spread over the threads. Every
    /// element's arithmetic is independent of the others, so any thread count gives the same bits.
    /// Returns true when every updated weight and moment is finite (checked in the same pass).
    @discardableResult
    public static func adamW(weights w: UnsafeMutablePointer<Float>, grads g: UnsafeMutablePointer<Float>,
                             moment1 m: UnsafeMutablePointer<Float>, moment2 v: UnsafeMutablePointer<Float>,
                             count: Int, _ k: AdamWConstants) -> Bool {
        var p = myopia_adamw_params(grad_scale: k.gradScale, decay: k.decay, lerp_weight: k.lerpWeight, beta2: k.beta2,
                                    one_minus_beta2: k.oneMinusBeta2, step_size: k.stepSize,
                                    bias_correction2_sqrt: k.biasCorrection2Sqrt, eps: k.eps)
        var allFinite: Int32 = 1
        let wP = SendablePointer(w), gP = SendablePointer(g), mP = SendablePointer(m), vP = SendablePointer(v)
        let portable = k.portable
        withUnsafePointer(to: &p) { pp in
            withUnsafeMutablePointer(to: &allFinite) { flag in
                // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
                let args = (wP, gP, mP, vP, SendablePointer(pp), SendablePointer(flag), portable)
                Parallel.forEachChunk(of: count, chunk: adamWChunk, args) { args, s, end in
                    let (wP, gP, mP, vP, ppP, flagP, portable) = args
                    let n = end - s
                    let finite = portable
                        ? myopia_adamw_portable(wP.pointer + s, gP.pointer + s, mP.pointer + s, vP.pointer + s, n, ppP.pointer)
                        : myopia_adamw(wP.pointer + s, gP.pointer + s, mP.pointer + s, vP.pointer + s, n, ppP.pointer)
                    if finite == 0 { myopia_flag_clear(flagP.pointer) }
                }
            }
        }
        return allFinite != 0
    }
}
