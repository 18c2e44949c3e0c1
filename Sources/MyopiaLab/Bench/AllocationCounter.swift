/// Counts heap allocations in-process (on every thread), for the rule that the training step
/// allocates nothing. The counting malloc is the C target CMyopiaAllocCounter, which only
/// executables link (the `myopia` CLI and the tests): a library must not replace its users' malloc,
/// so MyopiaLab cannot reach it and the program hands it over as two functions (`myopia bench`
/// passes one to `Bench.run`; where none is given the counts are nil).
public struct AllocationCounter: Sendable {
    private let setCounting: @Sendable (Bool) -> Void
    private let readTotal: @Sendable () -> Int

    /// `setCounting` switches counting on and off; `total` returns the allocations counted so far.
    public init(setCounting: @escaping @Sendable (Bool) -> Void, total: @escaping @Sendable () -> Int) {
        self.setCounting = setCounting
        self.readTotal = total
    }

    /// Allocations counted so far (while counting was on).
    public var total: Int { readTotal() }

    /// Starts counting. Pair with `stop()`.
    public func start() { setCounting(true) }

    /// Stops counting.
    public func stop() { setCounting(false) }

    /// The allocations made, on any thread, while `body` ran.
    public func count(_ body: () throws -> Void) rethrows -> Int {
        let before = total
        start()
        defer { stop() }
        try body()
        return total - before
    }
}
