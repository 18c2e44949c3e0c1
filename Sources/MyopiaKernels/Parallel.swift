import CMyopiaKernels
import Dispatch
import Foundation

/// The one parallel-for of Myopia. Work items are handed out dynamically (an atomic counter) to
/// `threadCount` workers of the Dispatch pool, so callers must make each item's result independent
/// of which thread runs it; every kernel in this module does, which is what makes results bitwise
/// identical for any thread count.
public enum Parallel {
    /// Worker threads the kernels use (default: ProcessInfo.activeProcessorCount). Tests set it to 1/2/3.
    nonisolated(unsafe) public static var threadCount: Int =
        max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs body(i) for every i in 0..<count, spread over `threadCount` threads; returns when all are done.
    /// count == 0 is a no-op; threadCount == 1 or count == 1 runs inline. Used for coarse work items.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(max(threadCount, 1), count)
        if workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let shared = SharedCounterBody(body: body)
            defer { shared.counter.deallocate() }
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let i = myopia_atomic_fetch_add(shared.counter, 1)
                    if i >= count { break }
                    shared.body(i)
                }
            }
        }
    }
}

/// The work closure and the next-item counter, shared by the workers of one `forEach`.
private final class SharedCounterBody: @unchecked Sendable {
    let body: (Int) -> Void
    let counter: UnsafeMutablePointer<Int>

    init(body: @escaping (Int) -> Void) {
        self.body = body
        counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
    }
}

/// A raw pointer that may be captured by the `@Sendable` closures of the parallel-for. The kernels
/// guarantee that concurrent work items touch disjoint memory.
@usableFromInline
struct SendablePointer<T>: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutablePointer<T>
    @inlinable init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
    @inlinable init(_ pointer: UnsafePointer<T>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}
