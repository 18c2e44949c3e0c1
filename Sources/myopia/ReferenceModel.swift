import ArgumentParser
import Foundation
import Myopia

/// Loads `--reference` (a trained model to fine-tune, and the local-myopic flow's frozen source of
/// earlier positions' keys and values) for `train` and `bonus`, and makes `config` describe it: its
/// shape and tokenizer replace the defaults, and a shape flag that disagrees is refused. A
/// `config.seqLen` of 0 becomes the reference's context length, at most 256.
func loadReference(_ nameOrPath: String, settings flags: TrainingFlags, config: inout TrainConfig) throws
    -> (source: URL, model: Transformer, tokenizer: any Tokenizer) {
    let (source, model, tokenizer) = try loadModel(nameOrPath, tokenizer: flags.tokenizer)
    let m = model.config
    func refuse(_ flag: String, _ given: Any, _ actual: Any) throws {
        throw ValidationError("--\(flag) \(given) differs from the reference's \(actual) (a fine-tuned model keeps the reference's shape)")
    }
    if let v = flags.family, v != m.family { try refuse("family", v, m.family) }
    if let v = flags.layers, v != m.nLayers { try refuse("layers", v, m.nLayers) }
    if let v = flags.heads, v != m.nHeads { try refuse("heads", v, m.nHeads) }
    if let v = flags.kvHeads, v != m.kvHeads { try refuse("kv-heads", v, m.kvHeads) }
    if let v = flags.dModel, v != m.dModel { try refuse("d-model", v, m.dModel) }
    if config.seqLen == 0 { config.seqLen = min(m.maxPositions, 256) }
    guard config.seqLen <= m.maxPositions else {
        throw ValidationError("--seq-len \(config.seqLen) is longer than the reference's \(m.maxPositions) positions")
    }
    config.adoptShape(of: m)
    config.tokenizer = flags.tokenizer ?? m.tokenizer ?? tokenizer.name
    Terminal.info("reference: \(source.path) (\(m.family), \(m.nLayers) layers, d_model \(m.dModel), \(model.params.count) parameters)")
    return (source, model, tokenizer)
}
