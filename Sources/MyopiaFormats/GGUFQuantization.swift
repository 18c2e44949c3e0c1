// ggml tensor types and their dequantisation to fp32 (docs/DESIGN.md §6).
//
// A ggml type stores a row of ne0 values as ne0 / blockSize blocks of blockBytes each; the plain
// types (F32, F16, BF16, ...) are blocks of one value. Every type ggml defines is listed, so a file
// holding, say, IQ2_XXS tensors still parses and lists them; F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K convert to floats, the others throw `.unsupported`
// naming the tensor, the type and the types that convert.
//
// Block layouts (little-endian, f16 = IEEE binary16 widened exactly to fp32, u32 qh bit i = qh >> i & 1).
// Blocks of 32 values; j = 0..<16 is a byte of qs, whose low nibble is value j and high nibble value j + 16:
//   Q4_0  18 bytes: f16 d, u8 qs[16]                      x[j] = d·(lo - 8),   x[j+16] = d·(hi - 8)
//   Q4_1  20 bytes: f16 d, f16 m, u8 qs[16]               x[j] = d·lo + m,     x[j+16] = d·hi + m
//   Q5_0  22 bytes: f16 d, u32 qh, u8 qs[16]              q[i] = nibble | (qh bit i) << 4 (i = j, j+16);
//                                                          x[i] = d·(q[i] - 16)
//   Q5_1  24 bytes: f16 d, f16 m, u32 qh, u8 qs[16]       q[i] as Q5_0;  x[i] = d·q[i] + m
//   Q8_0  34 bytes: f16 d, int8 q[32]                     x[j] = d·q[j]
// K-quants: blocks of 256 values (QK_K) in sub-blocks of 16 or 32, each with its own scale (and
// min) computed first, in fp32, as a product of the block's f16 d (dmin) and the sub-block's small
// integer. Value e = 0..<256 of the block, with l its index inside a run of 32:
//   Q2_K  84 bytes: u8 scales[16], u8 qs[64], f16 d, f16 dmin
//         sub-block s = e/16: dl = d·(scales[s] & 15), ml = dmin·(scales[s] >> 4)
//         q = qs[32·(e/128) + l] >> 2·(e%128/32) & 3;                         x = dl·q - ml
//   Q3_K 110 bytes: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
//         6-bit scale s = 0..<16: low 4 bits scales[s] & 15 (s < 8) or scales[s-8] >> 4,
//         high 2 bits scales[8 + s%4] >> 2·(s/4) & 3; dl = d·(scale - 32)
//         q = (qs[32·(e/128) + l] >> 2·(e%128/32) & 3) - (hmask[l] >> (e/32) & 1 == 1 ? 0 : 4);  x = dl·q
//   Q4_K 144 bytes: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
//         6-bit scale and min of sub-block k = e/32 (ggml's get_scale_min_k4), for j = 0..<4:
//           sc[j] = scales[j] & 63,  sc[j+4] = scales[j+8] & 15 | (scales[j] >> 6) << 4
//           mn[j] = scales[j+4] & 63, mn[j+4] = scales[j+8] >> 4 | (scales[j+4] >> 6) << 4
//         dk = d·sc[k], mk = dmin·mn[k]; q = qs[32·(k/2) + l] >> 4·(k%2) & 15;     x = dk·q - mk
//   Q5_K 176 bytes: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//         as Q4_K, with q |= (qh[l] >> k & 1) << 4
//   Q6_K 210 bytes: u8 ql[128], u8 qh[64], int8 scales[16], f16 d
//         ds = d·scales[e/16]; h = e/128, t = e%128/32:
//         q = (ql[64·h + 32·(t%2) + l] >> 4·(t/2) & 15 | (qh[32·h + l] >> 2t & 3) << 4) - 32;  x = ds·q
// Each value is rounded as in gguf.quants.dequantize: every product and sum in fp32, the scale
// product first, then the product with the quant, then the sum or difference (never a fused
// multiply-add), so results match llama.cpp's Python package bit for bit
// (Tests/Fixtures/gguf/quants.gguf, tools/reference/gguf_reference.py).

import MyopiaKernels
import MyopiaSupport

/// A ggml tensor type (the u32 `type` of a GGUF tensor info).
public enum GGUFTensorType: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// "Q4_K (12)": the name and the number in the file, as error messages show it.
    public var description: String { "\(name) (\(rawValue))" }

    /// Values per block (1 for the plain types).
    public var blockSize: Int { layout.values }

    /// Bytes per block.
    public var blockBytes: Int { layout.bytes }

    /// Whether `GGUFFile.floats` converts this type.
    public var isDequantizable: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }

    /// The types `GGUFFile.floats` converts, in ggml's order: "F32, F16, Q4_0, ...".
    public static var dequantizableNames: String { allCases.filter(\.isDequantizable).map(\.name).joined(separator: ", ") }

    /// ggml's table (ggml.c type_traits; gguf-py GGML_QUANT_SIZES). QK_K = 256.
    private var layout: (values: Int, bytes: Int) {
        switch self {
        case .f32, .i32: return (1, 4)
        case .f16, .bf16, .i16: return (1, 2)
        case .f64, .i64: return (1, 8)
        case .i8: return (1, 1)
        case .q4_0, .iq4_NL: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 40)
        case .mxfp4: return (32, 17)
        case .q2_K: return (256, 84)
        case .q3_K: return (256, 110)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        case .q8_K: return (256, 292)
        case .iq2_XXS: return (256, 66)
        case .iq2_XS: return (256, 74)
        case .iq3_XXS: return (256, 98)
        case .iq1_S: return (256, 50)
        case .iq3_S: return (256, 110)
        case .iq2_S: return (256, 82)
        case .iq4_XS: return (256, 136)
        case .iq1_M: return (256, 56)
        case .tq1_0: return (256, 54)
        case .tq2_0: return (256, 66)
        }
    }

    /// ggml's name: "F32", "Q4_K", "IQ2_XXS".
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .mxfp4: return "MXFP4"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_XXS: return "IQ2_XXS"
        case .iq2_XS: return "IQ2_XS"
        case .iq3_XXS: return "IQ3_XXS"
        case .iq1_S: return "IQ1_S"
        case .iq4_NL: return "IQ4_NL"
        case .iq3_S: return "IQ3_S"
        case .iq2_S: return "IQ2_S"
        case .iq4_XS: return "IQ4_XS"
        case .iq1_M: return "IQ1_M"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        }
    }
}

/// The dequantisation kernels. `source` holds `count / blockSize` whole blocks (checked by the
/// caller); work is split into chunks of whole blocks spread over `Parallel` (each output element
/// depends only on its own block, so the result is the same for any thread count).
enum GGUFDequantizer {
    /// Elements per parallel work item: large enough to amortise a dispatch, small enough to balance.
    static let chunkElements = 1 << 16

    static func dequantize(_ type: GGUFTensorType, _ source: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0, let src = source.baseAddress else { return }
        let chunks = (count + chunkElements - 1) / chunkElements
        Parallel.forEach(chunks) { c in
            let begin = c * chunkElements
            let n = min(chunkElements, count - begin)     // a multiple of the block size
            let blockBegin = begin / type.blockSize
            let s = src + blockBegin * type.blockBytes
            let o = out + begin
            switch type {
            case .f32: UnsafeMutableRawPointer(o).copyMemory(from: s, byteCount: n * 4)   // little-endian host
            case .f16: f16(s, o, n)
            case .bf16: bf16(s, o, n)
            case .q4_0: q4_0(s, o, n / 32)
            case .q4_1: q4_1(s, o, n / 32)
            case .q5_0: q5_0(s, o, n / 32)
            case .q5_1: q5_1(s, o, n / 32)
            case .q8_0: q8_0(s, o, n / 32)
            case .q2_K: q2_K(s, o, n / 256)
            case .q3_K: q3_K(s, o, n / 256)
            case .q4_K: q4_K(s, o, n / 256)
            case .q5_K: q5_K(s, o, n / 256)
            case .q6_K: q6_K(s, o, n / 256)
            default: preconditionFailure("GGUFDequantizer: \(type) is not dequantisable; the caller checks isDequantizable")
            }
        }
    }

    @inline(__always)
    private static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        HalfFloat.float(fromHalfBits: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    private static func f16(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { o[i] = half(s, 2 * i) }
    }

    private static func bf16(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            o[i] = HalfFloat.float(fromBFloat16Bits: UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }

    // Sixteen values at a time: bytes widened to Int32 lanes, then to Float (exact: |q| < 2^24).
    private typealias Bytes = SIMD16<UInt8>
    private typealias Lanes = SIMD16<Int32>
    private typealias Values = SIMD16<Float>

    @inline(__always)
    private static func bytes(_ p: UnsafeRawPointer, _ offset: Int) -> Bytes { p.loadUnaligned(fromByteOffset: offset, as: Bytes.self) }

    @inline(__always)
    private static func lanes(_ b: Bytes) -> Lanes { Lanes(truncatingIfNeeded: b) }

    @inline(__always)
    private static func store(_ v: Values, _ o: UnsafeMutablePointer<Float>, _ index: Int) {
        UnsafeMutableRawPointer(o + index).storeBytes(of: v, as: Values.self)
    }

    private static let low4 = Bytes(repeating: 0x0F)
    /// Lane i tests bit i % 8 of its byte; adding 0x80 - bit carries a set bit into bit 7.
    private static let bitOfLane = Bytes(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128)
    private static let carryToTop = Bytes(repeating: 0x80) &- bitOfLane

    /// 16 in lane i where bit i of the low 16 bits of `bits` is set, else 0: the fifth bit of a Q5
    /// value. Uniform byte operations only (x86-64's baseline has no per-lane shift).
    @inline(__always)
    private static func fifthBit(_ bits: UInt32) -> Bytes {
        let spread = SIMD2<UInt64>(UInt64(bits & 0xFF) &* 0x0101_0101_0101_0101, UInt64((bits >> 8) & 0xFF) &* 0x0101_0101_0101_0101)
        let b = unsafeBitCast(spread, to: Bytes.self)              // lanes 0..<8: the low byte; 8..<16: the next
        return (((b & bitOfLane) &+ carryToTop) &>> 3) & Bytes(repeating: 16)
    }

    /// The fifth bits of values 0..<16 and 16..<32 of a Q5_0 / Q5_1 block (the u32 qh at `offset`).
    @inline(__always)
    private static func fifthBits(_ block: UnsafeRawPointer, _ offset: Int) -> (Bytes, Bytes) {
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        return (fifthBit(qh), fifthBit(qh >> 16))
    }

    private static func q4_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let eight = Lanes(repeating: 8)
        for b in 0..<blocks {
            let block = s + 18 * b, out = 32 * b
            let d = Values(repeating: half(block, 0))
            let qs = bytes(block, 2)
            store(d * Values(lanes(qs & low4) &- eight), o, out)
            store(d * Values(lanes(qs &>> 4) &- eight), o, out + 16)
        }
    }

    private static func q4_1(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = s + 20 * b, out = 32 * b
            let d = Values(repeating: half(block, 0))
            let m = Values(repeating: half(block, 2))
            let qs = bytes(block, 4)
            store(d * Values(lanes(qs & low4)) + m, o, out)        // weights 0..15
            store(d * Values(lanes(qs &>> 4)) + m, o, out + 16)    // weights 16..31
        }
    }

    private static func q5_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let sixteen = Lanes(repeating: 16)
        for b in 0..<blocks {
            let block = s + 22 * b, out = 32 * b
            let d = Values(repeating: half(block, 0))
            let (h0, h1) = fifthBits(block, 2)
            let qs = bytes(block, 6)
            store(d * Values(lanes(qs & low4 | h0) &- sixteen), o, out)
            store(d * Values(lanes(qs &>> 4 | h1) &- sixteen), o, out + 16)
        }
    }

    private static func q5_1(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = s + 24 * b, out = 32 * b
            let d = Values(repeating: half(block, 0))
            let m = Values(repeating: half(block, 2))
            let (h0, h1) = fifthBits(block, 4)
            let qs = bytes(block, 8)
            store(d * Values(lanes(qs & low4 | h0)) + m, o, out)
            store(d * Values(lanes(qs &>> 4 | h1)) + m, o, out + 16)
        }
    }

    private static func q8_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = s + 34 * b, out = 32 * b
            let d = Values(repeating: half(block, 0))
            let q0 = block.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)
            let q1 = block.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)
            store(Values(Lanes(truncatingIfNeeded: q0)) * d, o, out)
            store(Values(Lanes(truncatingIfNeeded: q1)) * d, o, out + 16)
        }
    }

    // K-quants: each loop writes sixteen values, run r = 0..<16 of the block (values 16r..<16r+16),
    // which lie in one sub-block of 16 (Q2_K, Q3_K, Q6_K) or of 32 (Q4_K, Q5_K).

    private static func q2_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let three = Bytes(repeating: 3)
        for b in 0..<blocks {
            let block = s + 84 * b, out = 256 * b
            let d = half(block, 80), dmin = half(block, 82)
            for r in 0..<16 {
                let half128 = r / 8, shift = UInt8(2 * (r % 8 / 2)), part = r % 2   // e/128, 2·(e%128/32), l/16
                let scale = block.load(fromByteOffset: r, as: UInt8.self)
                let dl = d * Float(scale & 0x0F), ml = dmin * Float(scale >> 4)
                let q = (bytes(block, 16 + 32 * half128 + 16 * part) &>> shift) & three
                store(Values(repeating: dl) * Values(lanes(q)) - Values(repeating: ml), o, out + 16 * r)
            }
        }
    }

    private static func q3_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let three = Bytes(repeating: 3), one = Bytes(repeating: 1), four = Lanes(repeating: 4)
        for b in 0..<blocks {
            let block = s + 110 * b, out = 256 * b
            let d = half(block, 108)
            for r in 0..<16 {
                let half128 = r / 8, group = r / 2, part = r % 2                      // e/128, e/32, l/16
                let lowByte = block.load(fromByteOffset: 96 + r % 8, as: UInt8.self)
                let highByte = block.load(fromByteOffset: 104 + r % 4, as: UInt8.self)
                let scale = (r < 8 ? lowByte & 0x0F : lowByte >> 4) | ((highByte >> UInt8(2 * (r / 4))) & 3) << 4
                let dl = d * Float(Int32(scale) - 32)
                let low = (bytes(block, 32 + 32 * half128 + 16 * part) &>> UInt8(2 * (group % 4))) & three
                let high = (bytes(block, 16 * part) &>> UInt8(group)) & one            // 1: no offset; 0: minus 4
                let q = lanes(low) &- (lanes(high ^ one) &* four)
                store(Values(repeating: dl) * Values(q), o, out + 16 * r)
            }
        }
    }

    /// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block k = 0..<8 from the 12 bytes at `scales`.
    @inline(__always)
    private static func scaleMin(_ scales: UnsafeRawPointer, _ k: Int) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        if k < 4 { return (byte(k) & 63, byte(k + 4) & 63) }
        let j = k - 4
        return (byte(j + 8) & 0x0F | (byte(j) >> 6) << 4, byte(j + 8) >> 4 | (byte(j + 4) >> 6) << 4)
    }

    private static func q4_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = s + 144 * b, out = 256 * b
            let d = half(block, 0), dmin = half(block, 2)
            for k in 0..<8 {
                let (scale, min) = scaleMin(block + 4, k)
                let dk = Values(repeating: d * Float(scale)), mk = Values(repeating: dmin * Float(min))
                let shift = UInt8(4 * (k % 2))
                for part in 0..<2 {
                    let q = (bytes(block, 16 + 32 * (k / 2) + 16 * part) &>> shift) & low4
                    store(dk * Values(lanes(q)) - mk, o, out + 32 * k + 16 * part)
                }
            }
        }
    }

    private static func q5_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let one = Bytes(repeating: 1)
        for b in 0..<blocks {
            let block = s + 176 * b, out = 256 * b
            let d = half(block, 0), dmin = half(block, 2)
            for k in 0..<8 {
                let (scale, min) = scaleMin(block + 4, k)
                let dk = Values(repeating: d * Float(scale)), mk = Values(repeating: dmin * Float(min))
                let shift = UInt8(4 * (k % 2))
                for part in 0..<2 {
                    let low = (bytes(block, 48 + 32 * (k / 2) + 16 * part) &>> shift) & low4
                    let high = (bytes(block, 16 + 16 * part) &>> UInt8(k)) & one
                    store(dk * Values(lanes(low | high &<< 4)) - mk, o, out + 32 * k + 16 * part)
                }
            }
        }
    }

    private static func q6_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let three = Bytes(repeating: 3), thirtyTwo = Lanes(repeating: 32)
        for b in 0..<blocks {
            let block = s + 210 * b, out = 256 * b
            let d = half(block, 208)
            for r in 0..<16 {
                let h = r / 8, t = r % 8 / 2, part = r % 2                           // e/128, e%128/32, l/16
                let ds = d * Float(block.load(fromByteOffset: 192 + r, as: Int8.self))
                let low = (bytes(block, 64 * h + 32 * (t % 2) + 16 * part) &>> UInt8(4 * (t / 2))) & low4
                let high = (bytes(block, 128 + 32 * h + 16 * part) &>> UInt8(2 * t)) & three
                let q = lanes(low | high &<< 4) &- thirtyTwo
                store(Values(repeating: ds) * Values(q), o, out + 16 * r)
            }
        }
    }
}
