/// Zeroed, 64-byte-aligned buffers that live as long as their owner: the activation cache and
/// the KV cache allocate everything once through one of these and free it together.
final class BufferArena {
    private var owned: [UnsafeMutableRawPointer] = []

    func floats(_ count: Int) -> UnsafeMutablePointer<Float> { allocate(count, as: Float.self, zero: 0) }
    func ints(_ count: Int) -> UnsafeMutablePointer<Int32> { allocate(count, as: Int32.self, zero: 0) }

    private func allocate<T>(_ count: Int, as type: T.Type, zero: T) -> UnsafeMutablePointer<T> {
        let n = max(count, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<T>.stride, alignment: 64)
        owned.append(raw)
        let p = raw.bindMemory(to: T.self, capacity: n)
        p.initialize(repeating: zero, count: n)
        return p
    }

    deinit { for p in owned { p.deallocate() } }
}
