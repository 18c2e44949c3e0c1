import Foundation
import Myopia
import MyopiaKernels

// Dimensions: N rows (positions), D features per row (d_model for a residual stream).

/// Hidden states collected for a probe: N rows of D features, stored as binary16 after subtracting
/// a per-column center (the column means of the first block appended). Half the memory of fp32,
/// and with the center removed a residual stream whose columns carry large constant offsets keeps
/// the variation a probe reads (binary16 has 11 significant bits relative to the centred value).
public struct FeatureMatrix: Sendable {
    public let width: Int
    public private(set) var rows = 0
    /// Subtracted from every row before it is stored (set by the first append).
    public private(set) var center: [Float] = []
    private var storage: [UInt16] = []

    public init(width: Int) {
        precondition(width > 0)
        self.width = width
    }

    public mutating func reserve(rows capacity: Int) { storage.reserveCapacity(capacity * width) }

    /// Appends `values.count / width` rows.
    public mutating func append(_ values: UnsafeBufferPointer<Float>) {
        precondition(values.count % width == 0, "\(values.count) floats is not whole rows of \(width)")
        let count = values.count / width, d = width
        guard count > 0 else { return }
        if center.isEmpty {
            var sums = [Double](repeating: 0, count: d)
            for r in 0..<count { for j in 0..<d { sums[j] += Double(values[r * d + j]) } }
            center = sums.map { Float($0 / Double(count)) }
        }
        let start = storage.count
        storage.append(contentsOf: repeatElement(0, count: count * d))
        storage.withUnsafeMutableBufferPointer { out in
            let o = SendableUInt16(out.baseAddress! + start), src = values.baseAddress!
            center.withUnsafeBufferPointer { centerB in
                let mid = centerB.baseAddress!
                Parallel.forEach((count + 255) / 256) { chunk in
                    for r in (chunk * 256)..<min(count, chunk * 256 + 256) {
                        for j in 0..<d { o.pointer[r * d + j] = HalfFloat.halfBits(from: src[r * d + j] - mid[j]) }
                    }
                }
            }
        }
        rows += count
    }

    public mutating func append(_ values: [Float]) {
        values.withUnsafeBufferPointer { append($0) }
    }

    /// Row i as stored (centre added back): equal to what was appended within binary16 rounding.
    public func row(_ i: Int) -> [Float] {
        (0..<width).map { HalfFloat.float(fromHalfBits: storage[i * width + $0]) + center[$0] }
    }

    /// Column means and standard deviations of the stored (centred) values over `indices`, in
    /// double. `gather` subtracts the same means, so the centre cancels.
    public func moments(_ indices: [Int]) -> (mean: [Double], std: [Double]) {
        let d = width
        var sum = [Double](repeating: 0, count: d), squares = sum
        storage.withUnsafeBufferPointer { s in
            for i in indices {
                let row = s.baseAddress! + i * d
                for j in 0..<d {
                    let x = Double(HalfFloat.float(fromHalfBits: row[j]))
                    sum[j] += x
                    squares[j] += x * x
                }
            }
        }
        let n = Double(max(1, indices.count))
        let mean = sum.map { $0 / n }
        let std = (0..<d).map { max(0, squares[$0] / n - mean[$0] * mean[$0]).squareRoot() }
        return (mean, std)
    }

    /// Writes rows `indices` standardised, (x − mean)·scale per column, into `out` (indices.count
    /// rows of `ld` ≥ width + 1 floats), with 1 in column `width` (the probe's bias input).
    public func gather(_ indices: ArraySlice<Int>, mean: [Float], scale: [Float], into out: UnsafeMutablePointer<Float>, ld: Int) {
        precondition(ld > width && mean.count == width && scale.count == width)
        let d = width, count = indices.count
        let o = SendableFloatPointer(out)
        storage.withUnsafeBufferPointer { s in
            mean.withUnsafeBufferPointer { m in
                scale.withUnsafeBufferPointer { sc in
                    indices.withUnsafeBufferPointer { idx in
                        let base = s.baseAddress!, mp = m.baseAddress!, sp = sc.baseAddress!, ip = idx.baseAddress!
                        Parallel.forEach((count + 63) / 64) { chunk in
                            for r in (chunk * 64)..<min(count, chunk * 64 + 64) {
                                let src = base + ip[r] * d, dst = o.pointer + r * ld
                                for j in 0..<d { dst[j] = (HalfFloat.float(fromHalfBits: src[j]) - mp[j]) * sp[j] }
                                dst[d] = 1
                                for j in (d + 1)..<ld { dst[j] = 0 }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Pointers that parallel-for bodies may capture; every work item writes its own rows.
struct SendableFloatPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

struct SendableUInt16: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt16>
    init(_ pointer: UnsafeMutablePointer<UInt16>) { self.pointer = pointer }
}
