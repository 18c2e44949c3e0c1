import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

/// The settings `train` and `gap` share: data, tokenizer, the model's shape and the optimiser. Each
/// flag overrides `--config FILE.json`, whose keys are the flags' names with `_` for `-`.
/// Numbers are parsed unconditionally, so `--lr -1` reaches the settings check and is refused
/// there in one line naming the setting (rather than read as an unknown flag "-1").
struct TrainingFlags: ParsableArguments {
    @Option(help: "A text file, or a known dataset name (default \(trainDefaults.data)).") var data: String?
    @Option(help: "Tokenizer: byte (default), gpt2, smollm2-135m, or a path (vocab.json+merges.txt, .tiktoken, .gguf).")
    var tokenizer: String?
    @Option(help: "A JSON file of settings whose keys match the flags.") var config: String?
    @Option(help: "Model family (default \(trainDefaults.family.rawValue)): gpt2 (LayerNorm, learned positions, GELU), llama (RMSNorm, RoPE, SwiGLU), gpt_neox, qwen2, qwen3, mistral, gemma2 or olmo2 (docs/DESIGN.md §3).")
    var family: ModelConfig.Family?
    @Option(parsing: .unconditional, help: "Transformer blocks (default \(trainDefaults.layers)).") var layers: Int?
    @Option(parsing: .unconditional, help: "Attention heads per block (default \(trainDefaults.heads)).") var heads: Int?
    @Option(name: .customLong("kv-heads"), parsing: .unconditional, help: "Key/value heads (grouped-query attention, every family but gpt2 and gpt_neox; default one per head).")
    var kvHeads: Int?
    @Option(name: .customLong("d-model"), parsing: .unconditional, help: "Residual stream width (default \(trainDefaults.dModel)).") var dModel: Int?
    @Option(name: .customLong("seq-len"), parsing: .unconditional, help: "Context length T, predictions per window (default \(trainDefaults.seqLen)).") var seqLen: Int?
    @Option(parsing: .unconditional, help: "Sequences per step (default \(trainDefaults.batch)).") var batch: Int?
    @Option(parsing: .unconditional, help: "Compute each batch in this many shards, added in a fixed order: the same result on one process or under mpirun -np N, N ≤ shards (default \(trainDefaults.shards)).")
    var shards: Int?
    @Option(parsing: .unconditional, help: "Optimiser steps per run (default \(trainDefaults.steps)).") var steps: Int?
    @Option(parsing: .unconditional, help: "Peak learning rate (default \(trainDefaults.lr)).") var lr: Double?
    @Option(name: .customLong("min-lr"), parsing: .unconditional, help: "Learning rate at the end of the cosine decay (default \(trainDefaults.minLR), or --lr/10 when that is lower).") var minLR: Double?
    @Option(parsing: .unconditional, help: "Linear warmup steps (default \(trainDefaults.warmup), at most --steps/10 when --steps is given).") var warmup: Int?
    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: "AdamW decoupled weight decay, matrices only (default \(trainDefaults.weightDecay)).") var weightDecay: Double?
    @Option(parsing: .unconditional, help: "Clip the global gradient norm to this value (default \(trainDefaults.clip)).") var clip: Double?
    @Option(name: .customLong("eval-every"), parsing: .unconditional, help: "Log a validation loss every N steps (default \(trainDefaults.evalEvery)).") var evalEvery: Int?
    @Option(name: .customLong("eval-windows"), parsing: .unconditional, help: "Validation windows per logged evaluation (default \(trainDefaults.evalWindows)).") var evalWindows: Int?
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Log metrics every N steps (default \(trainDefaults.logEvery)).") var logEvery: Int?
    @Option(name: .customLong("checkpoint-every"), parsing: .unconditional, help: "Save a checkpoint every N steps, and at the last (default \(trainDefaults.checkpointEvery)).") var checkpointEvery: Int?
    @Option(name: .customLong("checkpoint-at"), parsing: .unconditional,
            help: "Also keep checkpoints at these steps for good: log:N (N log-spaced steps) or a list (10,100,500).")
    var checkpointAt: String?
    @Option(name: .customLong("log-gradient-split"), parsing: .unconditional,
            help: "Every N steps, log g_myopic and g_future per parameter group to metrics.jsonl (what `dynamics` draws; default off).")
    var logGradientSplit: Int?
    @OptionGroup var game: GameFlags

    /// `--config` (or the defaults) with every given flag applied. A peak learning rate below the
    /// default minimum takes a tenth of itself as minimum; a warmup longer than half the steps
    /// shrinks to a tenth of them, unless either was given.
    /// With `applyingGame` false the game flags are left out (`myopia games` reads them itself).
    func resolve(applyingGame: Bool = true) throws -> TrainConfig {
        var c = try config.map { try TrainConfig.load(from: URL(fileURLWithPath: $0)) } ?? TrainConfig()
        if let data { c.data = data }
        if let tokenizer { c.tokenizer = tokenizer }
        if let family { c.family = family }
        if let layers { c.layers = layers }
        if let heads { c.heads = heads }
        if let kvHeads { c.kvHeads = kvHeads }
        if let dModel { c.dModel = dModel }
        if let seqLen { c.seqLen = seqLen }
        if let batch { c.batch = batch }
        if let shards { c.shards = shards }
        if let steps { c.steps = steps }
        if let lr { c.lr = lr }
        if let minLR { c.minLR = minLR }
        if let warmup { c.warmup = warmup }
        if let weightDecay { c.weightDecay = weightDecay }
        if let clip { c.clip = clip }
        if let evalEvery { c.evalEvery = evalEvery }
        if let evalWindows { c.evalWindows = evalWindows }
        if let logEvery { c.logEvery = logEvery }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if let checkpointAt { c.checkpointAt = checkpointAt }
        if let logGradientSplit { c.logGradientSplit = logGradientSplit }
        if applyingGame { try game.apply(to: &c) }
        if minLR == nil, lr != nil, c.minLR > c.lr { c.minLR = c.lr / 10 }
        if warmup == nil, steps != nil, c.warmup > c.steps / 2 { c.warmup = c.steps / 10 }
        return c
    }
}

extension TrainingFlags {
    /// The shape and tokenizer flags given, which a reference model must agree with.
    var given: ReferenceModel.Given {
        ReferenceModel.Given(tokenizer: tokenizer, family: family, layers: layers, heads: heads, kvHeads: kvHeads, dModel: dModel)
    }
}

extension ModelConfig.Family: ExpressibleByArgument {}

/// The settings a training run has when neither a flag nor --config gives them (shown in --help).
let trainDefaults = TrainConfig()
