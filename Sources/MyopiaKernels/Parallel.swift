import CMyopiaKernels
import Foundation

/// The one parallel-for of Myopia, on a small persistent thread pool (CMyopiaKernels/pool.c; it
/// replaced DispatchQueue.concurrentPerform, which on Linux often ran back-to-back jobs on the
/// calling thread alone). Callers make each item's result independent of which thread runs it;
/// every kernel in this module does, which is what makes results bitwise identical for any thread
/// count. A parallel-for started inside another (or while another thread's is running) runs inline.
public enum Parallel {
    /// Worker threads the kernels use (default: ProcessInfo.activeProcessorCount). Tests set it to 1/2/3.
    nonisolated(unsafe) public static var threadCount: Int =
        max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs body(i) for every i in 0..<count, spread over `threadCount` threads; returns when all are done.
    /// count == 0 is a no-op; threadCount == 1 or count == 1 runs inline. Used for coarse work items.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        run(count, dynamic: true, body)
    }

    /// Like forEach, but item i runs on participant i % threadCount (with count == threadCount:
    /// one item per thread, none taken over by the caller when a worker starts late).
    static func forEachStatic(_ count: Int, threads: Int = threadCount, _ body: (Int) -> Void) {
        run(count, threads: threads, dynamic: false, body)
    }

    private static func run(_ count: Int, threads: Int = threadCount, dynamic: Bool, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(max(threads, 1), count)
        if workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        // The closure travels to the C pool inside a struct: a function-typed field keeps its own
        // representation, where a bare closure passed as a generic value would be re-abstracted
        // through a heap-allocated thunk on every call (the training step allocates nothing).
        withoutActuallyEscaping(body) { body in
            var task = ParallelTask(body: body)
            withUnsafeMutablePointer(to: &task) { taskPointer in
                myopia_parallel_run(workers, count, dynamic ? 1 : 0, { context, index in
                    context!.assumingMemoryBound(to: ParallelTask.self).pointee.body(index)
                }, taskPointer)
            }
        }
    }
}

/// A parallel-for body as the C pool sees it (see `Parallel.run`).
private struct ParallelTask {
    let body: (Int) -> Void
}

/// A raw pointer captured by parallel-for bodies (Sendable, so the bodies stay valid if they ever
/// have to be `@Sendable`). The kernels guarantee that concurrent work items touch disjoint memory.
@usableFromInline
struct SendablePointer<T>: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutablePointer<T>
    @inlinable init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
    @inlinable init(_ pointer: UnsafePointer<T>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}
