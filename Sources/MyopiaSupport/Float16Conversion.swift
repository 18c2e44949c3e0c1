// Bit-exact conversions between fp32 and the 16-bit formats found in checkpoints:
// IEEE 754 binary16 ("F16": 1 sign, 5 exponent, 10 mantissa bits) and bfloat16 ("BF16": the top
// 16 bits of an fp32). Done on bit patterns so they behave the same on every platform, whether or
// not Swift's `Float16` type exists there (it does not on x86_64 macOS).

public enum HalfFloat {
    /// binary16 bits -> Float. Exact for every input: normals, subnormals, ±0, ±inf, NaN (payload kept).
    @inline(__always)
    public static func float(fromHalfBits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        var mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F {                      // inf / NaN
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent != 0 {                          // normal: rebias 15 -> 127
            return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
        }
        if mantissa == 0 { return Float(bitPattern: sign) }   // ±0
        // Subnormal: value = mantissa × 2^-24. Normalise so the leading 1 sits at bit 10.
        var e: UInt32 = 113                         // fp32 biased exponent of 2^-14
        while mantissa & 0x0400 == 0 { mantissa <<= 1; e -= 1 }
        return Float(bitPattern: sign | (e << 23) | ((mantissa & 0x03FF) << 13))
    }

    /// Float -> binary16 bits, rounding to nearest even; overflow gives ±inf, NaN stays a (quiet) NaN.
    public static func halfBits(from value: Float) -> UInt16 {
        let x = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x007F_FFFF
        if exponent == 0xFF {
            if mantissa == 0 { return sign | 0x7C00 }
            let payload = UInt16(truncatingIfNeeded: mantissa >> 13)
            return sign | 0x7C00 | 0x0200 | payload
        }
        let e = exponent - 127 + 15                 // binary16 biased exponent
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            // Subnormal half (or zero): mantissa_h = significand24 >> (14 - e), rounded.
            if e < -10 { return sign }
            let significand = mantissa | 0x0080_0000
            let shift = UInt32(14 - e)
            var result = significand >> shift
            let remainder = significand & ((1 << shift) - 1)
            let half = UInt32(1) << (shift - 1)
            if remainder > half || (remainder == half && result & 1 == 1) { result += 1 }
            return sign | UInt16(truncatingIfNeeded: result)
        }
        var result = (UInt32(e) << 10) | (mantissa >> 13)
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && result & 1 == 1) { result += 1 } // may carry to inf
        return sign | UInt16(truncatingIfNeeded: result)
    }

    /// bfloat16 bits -> Float (exact: bf16 is the high half of an fp32).
    @inline(__always)
    public static func float(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Float -> bfloat16 bits, rounding to nearest even; NaN stays a quiet NaN.
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let x = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: x >> 16) | 0x0040 }
        let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }
}
