/// Rejects impossible settings before any work starts, with one typed error naming where they came
/// from (`file`: a config file or "flags") and the field. Shared by every kind of run.

import MyopiaSupport
public struct SettingsCheck {
    public let file: String

    public init(file: String) { self.file = file }

    public func check(_ ok: Bool, _ field: String, _ expected: String, _ found: Any) throws {
        if !ok { throw InputError.invalidValue(file: file, field: field, expected: expected, found: "\(found)") }
    }

    /// Largest value of any one size (as config.json's dimensions): keeps products of sizes far
    /// from overflow; whether the whole run fits in memory is `TrainConfig.checkMemory`'s question.
    public static let maxDimension = 1 << 20

    /// The model's shape: positive sizes, heads dividing d_model.
    public func model(layers: Int, heads: Int, dModel: Int, seqLen: Int) throws {
        let limit = Self.maxDimension
        try check(layers > 0 && layers <= limit, "layers", "a positive integer up to \(limit)", layers)
        try check(heads > 0 && heads <= limit, "heads", "a positive integer up to \(limit)", heads)
        try check(dModel > 0 && dModel <= limit, "d_model", "a positive integer up to \(limit)", dModel)
        try check(heads > 0 && dModel % heads == 0, "heads", "a divisor of d_model (\(dModel))", heads)
        try check(seqLen > 0 && seqLen <= limit, "seq_len", "a positive integer up to \(limit)", seqLen)
    }

    /// Batch, schedule and AdamW settings.
    public func optimisation(batch: Int, steps: Int, lr: Double, minLR: Double, warmup: Int, weightDecay: Double,
                             beta1: Double, beta2: Double, clip: Double) throws {
        try check(batch > 0 && batch <= Self.maxDimension, "batch", "a positive integer up to \(Self.maxDimension)", batch)
        try check(steps >= 0, "steps", "zero or more", steps)
        try check(lr > 0 && lr.isFinite, "lr", "a positive number", lr)
        try check(minLR >= 0 && minLR <= lr, "min_lr", "between 0 and lr (\(lr))", minLR)
        try check(warmup >= 0, "warmup", "zero or more", warmup)
        try check(weightDecay >= 0, "weight_decay", "zero or more", weightDecay)
        try check((0..<1).contains(beta1), "beta1", "in [0, 1)", beta1)
        try check((0..<1).contains(beta2), "beta2", "in [0, 1)", beta2)
        try check(clip > 0, "clip", "a positive number", clip)
    }
}
