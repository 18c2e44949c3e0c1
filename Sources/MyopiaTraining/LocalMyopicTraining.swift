import Foundation
import MyopiaSupport
import MyopiaModel

// Fine-tuning from a reference model, and the local-myopic flow's frozen reference (LocalMyopic.swift).

extension Trainer {
    /// Checks `reference` against the run and, under the local-myopic flow, hands it to `model` as
    /// the frozen source of earlier positions' keys and values. The local-myopic flow needs one.
    static func attach(_ reference: Transformer?, to model: Transformer, config: TrainConfig) throws {
        guard let reference else {
            if config.flow == .localMyopic {
                throw InputError.missing(file: "flags", field: "reference (the local-myopic flow attends to a frozen reference model's keys and values: give --reference DIR)")
            }
            return
        }
        precondition(reference !== model, "the trained model must be a copy of the reference")
        guard config.seqLen <= reference.config.maxPositions else {
            throw InputError.invalidValue(file: "reference", field: "max_positions",
                                           expected: "at least seq_len \(config.seqLen)", found: "\(reference.config.maxPositions)")
        }
        if config.flow == .localMyopic {
            try model.checkReference(reference, seqLen: config.seqLen)
            model.reference = reference
        }
    }
}

extension TrainConfig {
    /// Takes the model's shape (family, layers, heads, key/value heads, d_model) from `model`, so
    /// that a run fine-tuning that model records what it actually trains. The tokenizer is set by
    /// whoever loaded the model (ReferenceModel), which knows the one it loaded: a model folder's
    /// tokenizer.json comes before the `myopia_tokenizer` of its config.
    public mutating func adoptShape(of model: ModelConfig) {
        family = model.family
        layers = model.nLayers
        heads = model.nHeads
        kvHeads = model.family == .llama && model.kvHeads != model.nHeads ? model.kvHeads : nil
        dModel = model.dModel
    }
}
