import Foundation
import XCTest
import Myopia

/// Where the committed reference fixtures live (Tests/Fixtures).
public let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// A scratch folder removed at the end of the test.
public func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Random floats N(0, std²) from a seeded generator.
public func randomFloats(_ count: Int, seed: UInt64, std: Float = 1) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float(rng.nextNormal()) * std }
}

/// ‖a − b‖ / ‖b‖ computed in double.
public func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return den == 0 ? num.squareRoot() : (num / den).squareRoot()
}

/// Largest |a − b| relative to the largest |b| (an element-wise view that a norm can hide).
public func maxRelativeError(_ a: [Float], _ b: [Float]) -> Double {
    var worst = 0.0, scale = 0.0
    for i in 0..<a.count {
        worst = max(worst, abs(Double(a[i]) - Double(b[i])))
        scale = max(scale, abs(Double(b[i])))
    }
    return scale == 0 ? worst : worst / scale
}

/// Central finite differences of `f` with respect to x[i] for the given indices.
public func numericalGradient(_ x: UnsafeMutablePointer<Float>, indices: [Int], eps: Float, _ f: () -> Double) -> [Double] {
    indices.map { i in
        let saved = x[i]
        x[i] = saved + eps
        let up = f()
        x[i] = saved - eps
        let down = f()
        x[i] = saved
        return (up - down) / Double(2 * eps)
    }
}

/// Asserts analytic and numerical gradients agree: |a − n| ≤ atol + rtol·|n| at every index.
public func assertGradientsClose(_ analytic: [Double], _ numeric: [Double], atol: Double = 2e-3, rtol: Double = 2e-2,
                          _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(analytic.count, numeric.count, file: file, line: line)
    var failures = 0
    for (i, (a, n)) in zip(analytic, numeric).enumerated() where abs(a - n) > atol + rtol * abs(n) {
        failures += 1
        if failures <= 5 { XCTFail("\(what)[\(i)]: analytic \(a) vs numeric \(n)", file: file, line: line) }
    }
    // A check that compares zeros with zeros proves nothing.
    XCTAssertGreaterThan(numeric.map(abs).max() ?? 0, 1e-4, "\(what): gradient is all zero", file: file, line: line)
}

/// Σ out ⊙ r in double: a scalar objective whose gradient with respect to `out` is `r`.
public func dot(_ out: UnsafePointer<Float>, _ r: [Float]) -> Double {
    var s = 0.0
    for i in 0..<r.count { s += Double(out[i]) * Double(r[i]) }
    return s
}

/// A heap buffer of floats with a stable pointer, so finite differences can poke it while a
/// closure reads it (arrays passed `&x` would break exclusivity).
public final class Buffer {
    public let p: UnsafeMutablePointer<Float>
    public let count: Int
    public init(_ values: [Float]) {
        count = values.count
        p = .allocate(capacity: max(1, count))
        p.initialize(repeating: 0, count: max(1, count))
        for i in 0..<count { p[i] = values[i] }
    }
    public convenience init(zeros count: Int) { self.init([Float](repeating: 0, count: count)) }
    deinit { p.deallocate() }
    public var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
    public var doubles: [Double] { array.map(Double.init) }
    public var all: [Int] { Array(0..<count) }
}

/// The whole-model gradient check: after `loss` (a forward pass with targets) and `backward`, each
/// parameter tensor's gradient along a random direction against a central difference of step
/// `directionEps` (a whole-tensor step moves the loss further than one coordinate, so it is small),
/// every tensor getting some gradient, and 40 single coordinates against finite differences.
public func assertWholeModelGradient(_ model: Transformer, label: String, directionEps: Float, directionSeed: UInt64,
                              coordinateSeed: UInt64, loss f: () -> Double, backward: () -> Void,
                              file: StaticString = #filePath, line: UInt = #line) {
    model.params.zeroGrads()
    _ = f()
    backward()
    let grads = model.params.gradArray()
    for e in model.params.entries {
        let d = randomFloats(e.count, seed: UInt64(e.offset) + directionSeed)
        let w = model.params.weights + e.offset
        let saved = Array(UnsafeBufferPointer(start: w, count: e.count))
        for i in 0..<e.count { w[i] = saved[i] + directionEps * d[i] }
        let up = f()
        for i in 0..<e.count { w[i] = saved[i] - directionEps * d[i] }
        let down = f()
        for i in 0..<e.count { w[i] = saved[i] }
        let numeric = (up - down) / Double(2 * directionEps)
        var analytic = 0.0
        for i in 0..<e.count { analytic += Double(grads[e.offset + i]) * Double(d[i]) }
        XCTAssertEqual(analytic, numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), "\(label) \(e.name)", file: file, line: line)
        XCTAssertGreaterThan(abs(analytic), 1e-5, "\(label) \(e.name) gets no gradient", file: file, line: line)
    }
    var rng = SeededGenerator(seed: coordinateSeed)
    let indices = (0..<40).map { _ in rng.nextInt(below: model.params.count) }
    let numeric = numericalGradient(model.params.weights, indices: indices, eps: 1e-2, f)
    assertGradientsClose(indices.map { Double(grads[$0]) }, numeric, atol: 5e-4, "\(label) model", file: file, line: line)
}

/// Asserts that `expression` throws an InputError of the named case whose field contains `field`
/// and whose message contains `reason`; returns the error.
@discardableResult
public func assertInputError<T>(_ expression: @autoclosure () throws -> T, _ caseName: String, field: String?, reason: String? = nil,
                          file: StaticString = #filePath, line: UInt = #line) -> InputError? {
    do {
        _ = try expression()
        XCTFail("expected InputError.\(caseName), got success", file: file, line: line)
        return nil
    } catch let error as InputError {
        let name = Mirror(reflecting: error).children.first?.label ?? "\(error)"
        XCTAssertEqual(name, caseName, "\(error)", file: file, line: line)
        if let field { XCTAssertTrue(error.field?.contains(field) == true, "field \(error.field ?? "nil") lacks \(field): \(error)", file: file, line: line) }
        if let reason { XCTAssertTrue(error.description.contains(reason), "message lacks \(reason): \(error)", file: file, line: line) }
        XCTAssertFalse(error.description.isEmpty)
        return error
    } catch {
        XCTFail("expected InputError.\(caseName), got \(error)", file: file, line: line)
        return nil
    }
}

/// Runs `body` once with each GEMM kernel this CPU can run (portable, avx2, avx512: the choices of
/// MYOPIA_KERNEL), then restores the kernel in use: reference tests must pass on each.
public func forEachKernel(_ body: (GEMM.Kernel) throws -> Void) rethrows {
    let saved = GEMM.kernel
    defer { GEMM.kernel = saved }
    for kernel in GEMM.Kernel.available {
        GEMM.kernel = kernel
        try body(kernel)
    }
}
