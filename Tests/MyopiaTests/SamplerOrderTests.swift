import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// `Sampler` sorts the vocabulary (its head) by probability (ties by id) through packed integer keys; every
/// token it draws is the one the plain comparison sort over the probabilities gives, with the same
/// random draws (a reference written out here), for temperature, top-k and top-p, with ties.
final class SamplerOrderTests: XCTestCase {
    /// The draw with the order sorted by comparing probabilities, then ids.
    func reference(_ logits: [Float], _ options: SamplingOptions, _ rng: inout SeededGenerator) -> Int32 {
        var probs = logits
        _ = probs.withUnsafeMutableBufferPointer { RowOps.softmax($0.baseAddress!, count: logits.count, scale: Float(1 / options.temperature)) }
        let order = Array(0..<logits.count).sorted { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        let ranked = order.map { probs[$0] }
        var keep = min(ranked.count, options.topK ?? ranked.count)
        if let p = options.topP, p < 1 {
            var running: Float = 0
            let sums = ranked.prefix(keep).map { x -> Float in running += x; return running }
            if let i = sums.firstIndex(where: { Double($0) >= p }) { keep = i + 1 }
        }
        let total = ranked.prefix(keep).reduce(Float(0), +)
        var u = Float(rng.nextUnit()) * total
        let pick = ranked.prefix(keep).firstIndex { x in
            u -= x
            return u <= 0
        } ?? keep - 1
        return Int32(order[pick])
    }

    /// Each setting (its seed `seed + index`) draws 40 times from `logits(data)` with `Sampler`
    /// and with the reference, the same random draws for both.
    func checkDraws(_ settings: [SamplingOptions], seed: UInt64, logits: (inout SeededGenerator) -> [Float]) {
        var data = SeededGenerator(seed: seed)
        for (s, base) in settings.enumerated() {
            var options = base
            options.seed = seed * 10 + UInt64(s)
            var sampler = Sampler(options)
            var rng = SeededGenerator(seed: options.seed)
            for step in 0..<40 {
                let row = logits(&data)
                let got = row.withUnsafeBufferPointer { sampler.sample($0.baseAddress!, count: row.count) }
                XCTAssertEqual(got, reference(row, options, &rng), "setting \(s) step \(step)")
            }
        }
    }

    /// Logits spread over tens of nats, as a language model's are: the sampler sorts only the
    /// tokens within half an ulp of the largest probability (a small head here) and must still draw
    /// exactly what sorting all of them gives, with cuts inside the head and past it.
    func testDrawsWithALongTailEqualTheComparisonSort() {
        checkDraws([SamplingOptions(temperature: 1), SamplingOptions(temperature: 1, topK: 3000),
                    SamplingOptions(temperature: 0.8, topK: 2, topP: 0.999), SamplingOptions(temperature: 1.5, topP: 0.95)],
                   seed: 12) { data in
            (0..<5000).map { j -> Float in Float(data.nextUnit() * 40) - (j < 20 ? 0 : 25) }
        }
    }

    /// Logits on a coarse grid, so many tokens tie; some far below (probability 0).
    func testDrawsEqualTheComparisonSort() {
        checkDraws([SamplingOptions(temperature: 1), SamplingOptions(temperature: 0.7, topK: 40),
                    SamplingOptions(temperature: 1.3, topP: 0.9), SamplingOptions(temperature: 0.9, topK: 200, topP: 0.5)],
                   seed: 11) { data in
            (0..<3000).map { j -> Float in
                let x = Float(Int(data.nextUnit() * 12)) * 0.5
                return j % 97 == 0 ? -200 : x
            }
        }
    }
}
