import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
import MyopiaLab

/// The refusal before loading a model that will not fit: each command's need against the memory
/// available (MYOPIA_MEMORY_LIMIT, else the cgroup limit v2 then v1, else physical memory), injected.
final class MemoryBudgetTests: XCTestCase {
    func testAvailableReadsTheCgroupLimitThenPhysicalMemory() throws {
        let dir = try temporaryDirectory(self)
        let v2 = dir.appendingPathComponent("memory.max"), v1 = dir.appendingPathComponent("limit_in_bytes")
        let none = dir.appendingPathComponent("absent").path
        try "1073741824\n".write(to: v2, atomically: true, encoding: .utf8)
        try "9223372036854771712\n".write(to: v1, atomically: true, encoding: .utf8)
        let physical: UInt64 = 8 << 30
        XCTAssertEqual(MemoryBudget.available(environment: [:], cgroupV2: v2.path, cgroupV1: v1.path, physical: physical),
                       .init(bytes: 1 << 30, source: "cgroup limit \(v2.path)"))
        // v1 only: its "no limit" value is above physical memory.
        XCTAssertEqual(MemoryBudget.available(environment: [:], cgroupV2: none, cgroupV1: v1.path, physical: physical),
                       .init(bytes: physical, source: "physical memory"))
        try "max\n".write(to: v2, atomically: true, encoding: .utf8)
        XCTAssertEqual(MemoryBudget.available(environment: [:], cgroupV2: v2.path, cgroupV1: none, physical: physical).bytes, physical)
        try "2147483648".write(to: v1, atomically: true, encoding: .utf8)
        XCTAssertEqual(MemoryBudget.available(environment: [:], cgroupV2: none, cgroupV1: v1.path, physical: physical).bytes, 2 << 30)
        XCTAssertEqual(MemoryBudget.available(environment: ["MYOPIA_MEMORY_LIMIT": "12345"], cgroupV2: v2.path, cgroupV1: v1.path,
                                              physical: physical), .init(bytes: 12345, source: "MYOPIA_MEMORY_LIMIT"))
    }

    func testEachCommandsNeedAgainstTheLimit() throws {
        // A 1.5B-parameter model (Qwen2.5-1.5B-shaped) in a 16 GiB limit.
        let qwen = ModelConfig.llama(vocabSize: 151_936, maxPositions: 4096, dModel: 1536, nLayers: 28, nHeads: 12,
                                     nKVHeads: 2, dMLP: 8960, tiedEmbeddings: true)
        let parameters = Transformer.layout(qwen).reduce(0) { $0 + $1.1.reduce(1, *) }
        XCTAssertGreaterThan(parameters, 1_300_000_000)
        let limit = MemoryBudget.Available(bytes: 16 << 30, source: "cgroup limit test")
        // eval: 4 bytes per parameter, about 5.7 GiB: fits.
        XCTAssertNoThrow(try ModelInputs.checkMemory(qwen, need: .forward, file: "qwen.gguf", available: limit))
        // gradients: 8 bytes per parameter, about 11 GiB: fits.
        XCTAssertNoThrow(try ModelInputs.checkMemory(qwen, need: .gradient, file: "qwen.gguf", available: limit))
        // training: 16 bytes per parameter, about 23 GiB: refused, naming the file and both figures.
        let error = try XCTUnwrap(assertInputError(try ModelInputs.checkMemory(qwen, need: .training, file: "qwen.gguf", available: limit),
                                                   "unsupported", field: "model size"))
        let message = "\(error)"
        XCTAssertTrue(message.contains("qwen.gguf"), message)
        XCTAssertTrue(message.contains("16.00 GiB available (cgroup limit test)"), message)
        XCTAssertTrue(message.contains(String(format: "%.2f GiB", Double(16 * parameters) / Double(1 << 30))), message)
        XCTAssertFalse(message.contains("\n"))
        // Activations count for training: a limit between 16P and 16P + A refuses.
        let activations = ModelInputs.activationBytes(qwen, batch: 8, seqLen: 256)
        XCTAssertGreaterThan(activations, 0)
        let between = MemoryBudget.Available(bytes: UInt64(16 * parameters + activations / 2), source: "test")
        XCTAssertThrowsError(try ModelInputs.checkMemory(qwen, need: .training, activations: activations, file: "q", available: between))
        XCTAssertNoThrow(try ModelInputs.checkMemory(qwen, need: .training, file: "q", available: between))
    }
}
