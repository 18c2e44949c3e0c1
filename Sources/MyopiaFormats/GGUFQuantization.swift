// ggml tensor types and their dequantisation to fp32 (docs/DESIGN.md §6).
//
// A ggml type stores a row of ne0 values as ne0 / blockSize blocks of blockBytes each; the plain
// types (F32, F16, BF16, ...) are blocks of one value. Every type ggml defines is listed, so a file
// holding, say, Q4_K tensors still parses and lists them; only F32, F16, BF16, Q8_0 and Q4_1 convert
// to floats, the others throw `.unsupported` naming the tensor and the type.
//
// Block layouts (little-endian, f16 = IEEE binary16):
//   Q8_0  34 bytes: f16 d, int8 q[32]                          x[j] = d·q[j]
//   Q4_1  20 bytes: f16 d, f16 m, u8 qs[16]                    x[j] = d·(qs[j] & 15) + m,
//                                                              x[j + 16] = d·(qs[j] >> 4) + m
// Each value is rounded as in gguf.quants.dequantize (the product, then the sum; no fused
// multiply-add), so results match llama.cpp's Python package bit for bit.

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
        case .f32, .f16, .bf16, .q8_0, .q4_1: return true
        default: return false
        }
    }

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
            case .q8_0: q8_0(s, o, n / 32)
            case .q4_1: q4_1(s, o, n / 32)
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

    private static func q8_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let out = UnsafeMutableRawPointer(o)
        for b in 0..<blocks {
            let block = s + 34 * b
            let d = SIMD16<Float>(repeating: half(block, 0))
            let q0 = block.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)
            let q1 = block.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)
            out.storeBytes(of: SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q0)) * d, toByteOffset: 128 * b, as: SIMD16<Float>.self)
            out.storeBytes(of: SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q1)) * d, toByteOffset: 128 * b + 64, as: SIMD16<Float>.self)
        }
    }

    private static func q4_1(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ blocks: Int) {
        let out = UnsafeMutableRawPointer(o)
        let mask = SIMD16<UInt8>(repeating: 0x0F)
        for b in 0..<blocks {
            let block = s + 20 * b
            let d = SIMD16<Float>(repeating: half(block, 0))
            let m = SIMD16<Float>(repeating: half(block, 2))
            let qs = block.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
            let low = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: qs & mask))     // weights 0..15
            let high = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: qs &>> 4))     // weights 16..31
            out.storeBytes(of: low * d + m, toByteOffset: 128 * b, as: SIMD16<Float>.self)
            out.storeBytes(of: high * d + m, toByteOffset: 128 * b + 64, as: SIMD16<Float>.self)
        }
    }
}
