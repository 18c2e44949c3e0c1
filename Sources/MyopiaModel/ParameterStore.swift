import Foundation
import MyopiaKernels

/// All parameters of a model in one flat fp32 buffer, with gradients and AdamW moments in buffers
/// that mirror it, and an ordered registry `name -> (offset, shape)` whose names are the Hugging Face
/// checkpoint keys. The optimiser, zeroing, clipping, norms and checkpoint I/O are loops over the
/// registry; data-parallel training would all-reduce `grads` as one buffer.
public final class ParameterStore {
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    public private(set) var count = 0

    public private(set) var weights: UnsafeMutablePointer<Float>
    /// Gradients, allocated (zeroed) on first use: a model that only runs forward (eval, lens,
    /// probe, generate) holds one fp32 copy of its weights, not two.
    public var grads: UnsafeMutablePointer<Float> {
        if let gradStorage { return gradStorage }
        let g = Self.allocate(count)
        gradStorage = g
        return g
    }
    private var gradStorage: UnsafeMutablePointer<Float>?
    /// Whether the gradient buffer exists yet.
    public var hasGrads: Bool { gradStorage != nil }
    /// AdamW first and second moments; allocated on first use by the optimiser.
    public private(set) var moment1: UnsafeMutablePointer<Float>?
    public private(set) var moment2: UnsafeMutablePointer<Float>?

    /// Builds the registry from (name, shape) pairs in order, then allocates zeroed buffers.
    public init(layout: [(String, [Int])]) {
        var offset = 0
        for (name, shape) in layout {
            precondition(index[name] == nil, "duplicate parameter \(name)")
            index[name] = entries.count
            entries.append(Entry(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        count = offset
        weights = Self.allocate(offset)
    }

    deinit {
        weights.deallocate()
        gradStorage?.deallocate()
        moment1?.deallocate()
        moment2?.deallocate()
    }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * MemoryLayout<Float>.stride, alignment: 64)
        let p = raw.bindMemory(to: Float.self, capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        return p
    }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// Offset of a registered parameter (a programming error if absent: names come from the layout).
    public func offset(_ name: String) -> Int {
        guard let i = index[name] else { preconditionFailure("no parameter named \(name)") }
        return entries[i].offset
    }

    public func weight(_ name: String) -> UnsafeMutablePointer<Float> { weights + offset(name) }
    public func grad(_ name: String) -> UnsafeMutablePointer<Float> { grads + offset(name) }

    public func zeroGrads() {
        guard let gradStorage else { return }   // allocated zeroed when first used
        RowOps.fill(gradStorage, count: count, with: 0)
    }

    /// Allocates the AdamW moments (zeroed) if they are not there yet.
    public func ensureMoments() {
        if moment1 == nil { moment1 = Self.allocate(count) }
        if moment2 == nil { moment2 = Self.allocate(count) }
    }

    public func buffer(_ p: UnsafeMutablePointer<Float>, _ e: Entry) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: p + e.offset, count: e.count)
    }

    /// Copies all weights out (for tests and comparisons).
    public func weightArray() -> [Float] { Array(UnsafeBufferPointer(start: weights, count: count)) }
    public func gradArray() -> [Float] { Array(UnsafeBufferPointer(start: grads, count: count)) }
    public func copyWeights(from other: ParameterStore) {
        precondition(other.count == count)
        weights.update(from: other.weights, count: count)
    }
}
