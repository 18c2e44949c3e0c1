import Foundation
import Myopia

/// The trained model that `train --reference` fine-tunes and `bonus` starts from (and, under the
/// local-myopic flow, the frozen source of earlier positions' keys and values).
public enum ReferenceModel {
    /// The settings given explicitly (flags), which a reference must agree with: a fine-tuned
    /// model keeps the reference's shape. nil: not given.
    public struct Given: Sendable {
        public var tokenizer: String?
        public var family: ModelConfig.Family?
        public var layers: Int?
        public var heads: Int?
        public var kvHeads: Int?
        public var dModel: Int?

        public init(tokenizer: String? = nil, family: ModelConfig.Family? = nil, layers: Int? = nil, heads: Int? = nil,
                    kvHeads: Int? = nil, dModel: Int? = nil) {
            self.tokenizer = tokenizer
            self.family = family
            self.layers = layers
            self.heads = heads
            self.kvHeads = kvHeads
            self.dModel = dModel
        }
    }

    /// Loads the reference `nameOrPath` and makes `config` describe it: its shape and tokenizer
    /// replace the defaults, and a shape setting in `given` that disagrees is refused. A
    /// `config.seqLen` of 0 becomes the reference's context length, at most 256.
    public static func load(_ nameOrPath: String, given: Given, config: inout TrainConfig,
                            log: (String) -> Void = { _ in }) throws -> ModelInputs.Loaded {
        let location = try ModelSource.locate(nameOrPath, log: log)
        let shape = try ModelSource.config(at: location)
        let window = config.seqLen == 0 ? min(shape.maxPositions, 256) : config.seqLen
        let (source, model, tokenizer) = try ModelInputs.load(
            location, tokenizer: given.tokenizer, need: .training,
            activations: ModelInputs.activationBytes(shape, batch: config.batch, seqLen: window), log: log)
        let m = model.config
        func refuse(_ flag: String, _ given: Any, _ actual: Any) throws {
            throw FlagError("--\(flag) \(given) differs from the reference's \(actual) (a fine-tuned model keeps the reference's shape)")
        }
        if let v = given.family, v != m.family { try refuse("family", v, m.family) }
        if let v = given.layers, v != m.nLayers { try refuse("layers", v, m.nLayers) }
        if let v = given.heads, v != m.nHeads { try refuse("heads", v, m.nHeads) }
        if let v = given.kvHeads, v != m.kvHeads { try refuse("kv-heads", v, m.kvHeads) }
        if let v = given.dModel, v != m.dModel { try refuse("d-model", v, m.dModel) }
        if config.seqLen == 0 { config.seqLen = min(m.maxPositions, 256) }
        guard config.seqLen <= m.maxPositions else {
            throw FlagError("--seq-len \(config.seqLen) is longer than the reference's \(m.maxPositions) positions")
        }
        config.adoptShape(of: m)
        config.tokenizer = given.tokenizer ?? tokenizer.name   // the one loaded: a folder's tokenizer.json, else the config's
        log("reference: \(source.path) (\(m.family), \(m.nLayers) layers, d_model \(m.dModel), \(model.params.count) parameters)")
        return (source, model, tokenizer)
    }
}
