// Transformer: a copy with the same weights, for fine-tuning while the original stays frozen.

extension Transformer {
    /// A new model with this one's config, weights, flow and checkpoint key names (its gradients and
    /// optimiser state start empty; it has no reference). Fine-tuning starts from a copy, so that the
    /// original can stay frozen as the reference.
    public func copy() -> Transformer {
        let model = Transformer(config: config)
        model.params.copyWeights(from: params)
        model.flow = flow
        model.checkpointKeys = checkpointKeys
        return model
    }
}
