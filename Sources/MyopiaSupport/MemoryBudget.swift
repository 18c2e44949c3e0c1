// Refusing a model that will not fit before it is loaded. A command's need is estimated from the
// model's parameter count P (4 bytes each, fp32):
//
//   forward   eval, lens, probe, generate      4P            one fp32 copy of the weights
//   gradient  gradients, horizon, upstream     8P + A        weights and their gradients
//   training  train (fine-tuning a model)      16P + A       weights, gradients, two AdamW moments
//
// A is the activations the backward pass keeps, estimated by the caller from the batch and window.
// The memory available to the process is the cgroup's limit (v2: /sys/fs/cgroup/memory.max; v1:
// /sys/fs/cgroup/memory/memory.limit_in_bytes), else the physical memory, whichever is smaller.
// MYOPIA_MEMORY_LIMIT (bytes) stands in for both, for tests and for leaving room for other work.
// A GGUF or safetensors file is memory-mapped and read once, a tensor at a time: its pages are
// reclaimable file cache, not counted here.

import Foundation

public enum MemoryBudget {
    public enum Need: String, Sendable {
        case forward, gradient, training
        /// Bytes per parameter.
        public var bytesPerParameter: Int {
            switch self {
            case .forward: return 4
            case .gradient: return 8
            case .training: return 16
            }
        }
    }

    /// Where the limit was read, for messages.
    public struct Available: Equatable, Sendable {
        public var bytes: UInt64
        public var source: String
        public init(bytes: UInt64, source: String) {
            self.bytes = bytes
            self.source = source
        }
    }

    /// The memory available to this process. Paths and values are injectable for tests.
    public static func available(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 cgroupV2: String = "/sys/fs/cgroup/memory.max",
                                 cgroupV1: String = "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                 physical: UInt64 = ProcessInfo.processInfo.physicalMemory) -> Available {
        if let text = environment["MYOPIA_MEMORY_LIMIT"], let bytes = UInt64(text) {
            return Available(bytes: bytes, source: "MYOPIA_MEMORY_LIMIT")
        }
        var best = Available(bytes: physical, source: "physical memory")
        for path in [cgroupV2, cgroupV1] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let bytes = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }   // "max": no limit
            if bytes < best.bytes { best = Available(bytes: bytes, source: "cgroup limit \(path)") }
            break
        }
        return best
    }

    /// Throws `.unsupported` naming `file` when `parameters` under `need` (plus `activations` bytes)
    /// exceed `available`.
    public static func check(parameters: Int, need: Need, activations: Int = 0, command: String, file: String,
                             available: Available = available()) throws {
        let (weights, overflow) = parameters.multipliedReportingOverflow(by: need.bytesPerParameter)
        let (total, overflow2) = weights.addingReportingOverflow(max(activations, 0))
        let bytes = overflow || overflow2 ? UInt64.max : UInt64(max(total, 0))
        guard bytes > available.bytes else { return }
        let what: String
        switch need {
        case .forward: what = "the fp32 weights"
        case .gradient: what = "the fp32 weights and their gradients, plus activations"
        case .training: what = "4 × the fp32 weights (weights, gradients, AdamW moments), plus activations"
        }
        throw InputError.unsupported(file: file, field: "model size",
                                      value: "\(parameters) parameters: \(command) needs about \(gib(bytes)) (\(what)), "
                                          + "more than the \(gib(available.bytes)) available (\(available.source))")
    }

    static func gib(_ bytes: UInt64) -> String {
        bytes == .max ? "more than 2^63 bytes" : String(format: "%.2f GiB", Double(bytes) / Double(1 << 30))
    }
}
