import CMyopiaKernels
import Foundation

/// The one parallel-for of Myopia, on a small persistent thread pool (CMyopiaKernels/pool.c; it
/// replaced DispatchQueue.concurrentPerform, which on Linux often ran back-to-back jobs on the
/// calling thread alone). Callers make each item's result independent of which thread runs it;
/// every kernel in this module does, which is what makes results bitwise identical for any thread
/// count. A parallel-for started inside another (or while another thread's is running) runs inline.
/// GEMM's threads, which wait for one another, take the pool as a gang instead (all at once or not
/// at all; see myopia_sgemm_parallel).
public enum Parallel {
    /// Worker threads the kernels use (default: ProcessInfo.activeProcessorCount). Tests set it to 1/2/3.
    nonisolated(unsafe) public static var threadCount: Int =
        max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs body(args, i) for every i in 0..<count, spread over `threadCount` threads; returns when
    /// all are done. count == 0 is a no-op; threadCount == 1 or count == 1 runs inline. Used for
    /// coarse work items.
    ///
    /// Allocates nothing when `body` captures nothing: everything it needs travels in `args` (a
    /// tuple or small struct of pointers, sizes and other plain values, but no closures, which would
    /// be re-wrapped on the heap), so the closure has no context to put on the heap. This is the
    /// form for anything a training step runs (the step allocates nothing).
    @inlinable
    public static func forEach<Args>(_ count: Int, _ args: Args, _ body: @escaping (Args, Int) -> Void) {
        run(count, threads: threadCount, dynamic: true, ItemTask(args: args, body: body))
    }

    /// Runs body(args, lo, hi) for the ranges lo..<hi that cut 0..<count into pieces of `chunk` (the
    /// last may be shorter), as `forEach(_:_:_:)` runs items: the cut depends only on count and
    /// chunk, never on the thread count. Allocates nothing when `body` captures nothing.
    @inlinable
    public static func forEachChunk<Args>(of count: Int, chunk: Int, _ args: Args,
                                          _ body: @escaping (Args, Int, Int) -> Void) {
        precondition(chunk > 0, "Parallel.forEachChunk: chunk must be positive")
        run((max(count, 0) + chunk - 1) / chunk, threads: threadCount, dynamic: true,
            ChunkTask(args: args, body: body, count: count, chunk: chunk))
    }

    /// Runs body(i) for every i in 0..<count, like `forEach(_:_:_:)`, for code outside the training
    /// step: letting a capturing closure reach the pool costs one small heap box per call (with more
    /// than one thread), which the args form avoids.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        guard min(threadCount, count) > 1 else {
            for i in 0..<max(count, 0) { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // The closure travels behind a pointer: inside `args` it would be re-wrapped for every item.
            var closure = Closure(body: body)
            withUnsafePointer(to: &closure) { closure in
                forEach(count, closure) { closure, i in closure.pointee.body(i) }
            }
        }
    }

    /// Like forEach (args form), but item i runs on participant i % threads (with count == threads:
    /// one item per thread, none taken over by the caller when a worker starts late). For items of
    /// equal cost, and where every participant must see some (per-thread scratch sized in a
    /// warm-up step).
    public static func forEachStatic<Args>(_ count: Int, threads: Int = threadCount, _ args: Args,
                                    _ body: @escaping (Args, Int) -> Void) {
        run(count, threads: threads, dynamic: false, ItemTask(args: args, body: body))
    }

    // Generic and inlinable, so that every call site gets a copy specialized to its task type:
    // unspecialized, the task's closure would be re-wrapped on the heap on every call.
    @inlinable
    static func run<Task: ParallelTask>(_ count: Int, threads: Int, dynamic: Bool, _ task: Task) {
        guard count > 0 else { return }
        let workers = min(max(threads, 1), count)
        if workers == 1 {
            for i in 0..<count { task.run(i) }
            return
        }
        // The task lives on this stack frame; the pool sees it through an `ErasedTask`, whose invoke
        // function captures nothing (only the type Task, fixed by specialization).
        var task = task
        withUnsafePointer(to: &task) { task in
            var erased = ErasedTask(task: UnsafeRawPointer(task)) { task, index in
                task.assumingMemoryBound(to: Task.self).pointee.run(index)
            }
            runOnPool(workers, count, dynamic, &erased)
        }
    }

    /// Hands a task to the C pool (CMyopiaKernels/pool.c), which calls `invoke` for every item.
    @usableFromInline
    static func runOnPool(_ workers: Int, _ count: Int, _ dynamic: Bool, _ task: UnsafeMutablePointer<ErasedTask>) {
        myopia_parallel_run(workers, count, dynamic ? 1 : 0, { context, index in
            let erased = context!.assumingMemoryBound(to: ErasedTask.self)
            erased.pointee.invoke(erased.pointee.task, index)
        }, task)
    }

    /// The closure of the closure form, behind a pointer (see `forEach(_:_:)`).
    struct Closure {
        let body: (Int) -> Void
    }
}

/// A parallel-for's work: item i of it.
@usableFromInline
protocol ParallelTask {
    func run(_ index: Int)
}

/// `forEach`'s work: body(args, i).
@usableFromInline
struct ItemTask<Args>: ParallelTask {
    @usableFromInline let args: Args
    @usableFromInline let body: (Args, Int) -> Void
    @inlinable init(args: Args, body: @escaping (Args, Int) -> Void) { self.args = args; self.body = body }
    @inlinable func run(_ index: Int) { body(args, index) }
}

/// `forEachChunk`'s work: body(args, lo, hi) for the index-th chunk.
@usableFromInline
struct ChunkTask<Args>: ParallelTask {
    @usableFromInline let args: Args
    @usableFromInline let body: (Args, Int, Int) -> Void
    @usableFromInline let count: Int, chunk: Int
    @inlinable init(args: Args, body: @escaping (Args, Int, Int) -> Void, count: Int, chunk: Int) {
        self.args = args; self.body = body; self.count = count; self.chunk = chunk
    }
    @inlinable func run(_ index: Int) { body(args, index * chunk, min(count, (index + 1) * chunk)) }
}

/// A parallel-for task as the C pool sees it: the task's address and a function that runs one item.
@usableFromInline
struct ErasedTask {
    @usableFromInline let task: UnsafeRawPointer
    @usableFromInline let invoke: (UnsafeRawPointer, Int) -> Void
    @inlinable init(task: UnsafeRawPointer, invoke: @escaping (UnsafeRawPointer, Int) -> Void) {
        self.task = task; self.invoke = invoke
    }
}

/// A raw pointer captured by parallel-for bodies (Sendable, so the bodies stay valid if they ever
/// have to be `@Sendable`). The kernels guarantee that concurrent work items touch disjoint memory.
@usableFromInline
struct SendablePointer<T>: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutablePointer<T>
    @inlinable init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
    @inlinable init(_ pointer: UnsafePointer<T>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}
