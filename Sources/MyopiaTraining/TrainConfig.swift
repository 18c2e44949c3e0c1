import Foundation
import MyopiaSupport
import MyopiaModel
import MyopiaTokenizers

/// Everything that defines a training run. The JSON keys are the CLI flags with `_` for `-`
/// (`--d-model` ↔ `d_model`), so `--config FILE.json` and the flags say the same things.
public struct TrainConfig: Codable, Equatable, Sendable {
    public var data: String = "tinyshakespeare"
    /// The tokenizer: "byte" (256 symbols), "gpt2", or a path (see Tokenizers.load).
    public var tokenizer: String = ByteTokenizer.name
    /// Gradient flow: vanilla, myopic, beta=β or bigram (see GradientFlow).
    public var flow: GradientFlow = .vanilla
    /// Model family: gpt2 (LayerNorm, learned positions, GELU) or llama (RMSNorm, RoPE, SwiGLU).
    public var family: ModelConfig.Family = .gpt2
    public var layers = 4
    public var heads = 4
    /// Key/value heads (llama only; default: one per query head).
    public var kvHeads: Int? = nil
    public var dModel = 128
    public var seqLen = 128
    public var batch = 8
    /// The global batch is computed in this many shards of batch/shards windows, their gradients
    /// added in shard order: the same bits on one process or over any number of MPI ranks up to
    /// `shards` (DataParallelStep, docs/distributed.md). 1 is the whole batch at once, as before
    /// shards existed.
    public var shards = 1
    public var steps = 1000
    public var lr = 1e-3
    public var minLR = 1e-4
    public var warmup = 100
    public var weightDecay = 0.1
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var eps = 1e-8
    public var noDecay: [String] = []
    public var clip = 1.0
    public var seed: UInt64 = 1
    public var validationFraction = 0.1
    public var evalEvery = 100
    public var evalWindows = 64
    public var logEvery = 10
    public var checkpointEvery = 500
    /// Extra checkpoints kept for good, beside the rolling ones: `log:N` (N log-spaced steps from 1
    /// to `steps`, for curves over training) or a comma-separated list of steps. Nil: none.
    public var checkpointAt: String? = nil
    /// Every this many steps, log the gradient split (g_myopic, g_future) per parameter group; 0: never.
    public var logGradientSplit = 0
    /// The trained model this run fine-tunes (and, under the local-myopic flow, attends to): a run
    /// folder, checkpoint or .gguf path (absolute), or a model name; nil for a run from scratch.
    /// Recorded so that `--resume` finds it again.
    public var reference: String? = nil
    /// The training game (TrainingGame): teacher-forced, scheduled-sampling, consequence or
    /// multi-token. Its knobs are the keys below, present only for the game that reads them (a
    /// run records them all explicitly: `game`, read with defaults, fills them in).
    public var gameName = "teacher-forced"
    public var sampleRate: Double? = nil
    public var consequenceWeight: Double? = nil
    public var consequenceHorizon: Int? = nil
    public var consequencePositions: Int? = nil
    public var consequenceEstimator: ConsequenceEstimator? = nil
    public var predictionHeads: Int? = nil

    public init() {}

    /// The knobs' defaults, where a game is named without them.
    public static let defaultSampleRate = 0.25
    public static let defaultConsequence = ConsequenceSettings(weight: 0.5, horizon: 4, positions: 4, estimator: .sampled)
    public static let defaultPredictionHeads = 2

    /// The game these settings train with, its unset knobs at their defaults. Setting it records
    /// the game's knobs explicitly and clears the others. (An unknown `game` name reads as
    /// teacher forcing here; `validate` refuses it.)
    public var game: TrainingGame {
        get {
            switch gameName {
            case "scheduled-sampling":
                return .scheduledSampling(rate: sampleRate ?? Self.defaultSampleRate)
            case "consequence":
                let d = Self.defaultConsequence
                return .consequence(ConsequenceSettings(weight: consequenceWeight ?? d.weight, horizon: consequenceHorizon ?? d.horizon,
                                                        positions: consequencePositions ?? d.positions,
                                                        estimator: consequenceEstimator ?? d.estimator))
            case "multi-token":
                return .multiToken(heads: predictionHeads ?? Self.defaultPredictionHeads)
            default:
                return .teacherForced
            }
        }
        set {
            gameName = newValue.name
            sampleRate = nil; predictionHeads = nil
            consequenceWeight = nil; consequenceHorizon = nil; consequencePositions = nil; consequenceEstimator = nil
            switch newValue {
            case .teacherForced: break
            case .scheduledSampling(let rate): sampleRate = rate
            case .consequence(let s):
                consequenceWeight = s.weight; consequenceHorizon = s.horizon
                consequencePositions = s.positions; consequenceEstimator = s.estimator
            case .multiToken(let heads): predictionHeads = heads
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case data, tokenizer, flow, family, layers, heads, steps, lr, warmup, beta1, beta2, eps, clip, seed, batch, shards
        case kvHeads = "kv_heads"
        case dModel = "d_model", seqLen = "seq_len", minLR = "min_lr", weightDecay = "weight_decay"
        case noDecay = "no_decay", validationFraction = "validation_fraction", evalEvery = "eval_every"
        case evalWindows = "eval_windows", logEvery = "log_every", checkpointEvery = "checkpoint_every"
        case checkpointAt = "checkpoint_at"
        case logGradientSplit = "log_gradient_split"
        case reference
        case gameName = "game", sampleRate = "sample_rate", consequenceWeight = "consequence_weight"
        case consequenceHorizon = "consequence_horizon", consequencePositions = "consequence_positions"
        case consequenceEstimator = "consequence_estimator", predictionHeads = "prediction_heads"
    }

    /// Decodes a partial config on top of the defaults: absent keys keep their default values.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainConfig()
        data = try c.decodeIfPresent(String.self, forKey: .data) ?? d.data
        flow = try c.decodeIfPresent(GradientFlow.self, forKey: .flow) ?? d.flow
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer) ?? d.tokenizer
        family = try c.decodeIfPresent(ModelConfig.Family.self, forKey: .family) ?? d.family
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? d.kvHeads
        dModel = try c.decodeIfPresent(Int.self, forKey: .dModel) ?? d.dModel
        seqLen = try c.decodeIfPresent(Int.self, forKey: .seqLen) ?? d.seqLen
        batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? d.batch
        shards = try c.decodeIfPresent(Int.self, forKey: .shards) ?? d.shards
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
        lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? d.lr
        minLR = try c.decodeIfPresent(Double.self, forKey: .minLR) ?? d.minLR
        warmup = try c.decodeIfPresent(Int.self, forKey: .warmup) ?? d.warmup
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? d.weightDecay
        beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? d.beta2
        eps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? d.eps
        noDecay = try c.decodeIfPresent([String].self, forKey: .noDecay) ?? d.noDecay
        clip = try c.decodeIfPresent(Double.self, forKey: .clip) ?? d.clip
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        validationFraction = try c.decodeIfPresent(Double.self, forKey: .validationFraction) ?? d.validationFraction
        evalEvery = try c.decodeIfPresent(Int.self, forKey: .evalEvery) ?? d.evalEvery
        evalWindows = try c.decodeIfPresent(Int.self, forKey: .evalWindows) ?? d.evalWindows
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? d.logEvery
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        checkpointAt = try c.decodeIfPresent(String.self, forKey: .checkpointAt)
        logGradientSplit = try c.decodeIfPresent(Int.self, forKey: .logGradientSplit) ?? d.logGradientSplit
        reference = try c.decodeIfPresent(String.self, forKey: .reference) ?? d.reference
        gameName = try c.decodeIfPresent(String.self, forKey: .gameName) ?? d.gameName
        sampleRate = try c.decodeIfPresent(Double.self, forKey: .sampleRate)
        consequenceWeight = try c.decodeIfPresent(Double.self, forKey: .consequenceWeight)
        consequenceHorizon = try c.decodeIfPresent(Int.self, forKey: .consequenceHorizon)
        consequencePositions = try c.decodeIfPresent(Int.self, forKey: .consequencePositions)
        consequenceEstimator = try c.decodeIfPresent(ConsequenceEstimator.self, forKey: .consequenceEstimator)
        predictionHeads = try c.decodeIfPresent(Int.self, forKey: .predictionHeads)
    }

    /// Reads a `--config FILE.json`; accepts `d-model` as well as `d_model`.
    public static func load(from url: URL) throws -> TrainConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        if let syntax = InputError.jsonSyntax(in: data, file: url.path) { throw syntax }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw InputError.invalidHeader(file: url.path, field: "(top level)", reason: "not a JSON object")
        }
        let known = Set(Self.CodingKeys.allKeys)
        var normalised: [String: Any] = [:]
        for (key, value) in object {
            let k = key.replacingOccurrences(of: "-", with: "_")
            guard known.contains(k) else {
                // The key as typed, unless it is empty or holds characters that would break the line.
                let printable = !key.isEmpty && !key.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || $0 == "\"" }
                let field = printable ? key : "\"" + key.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\""
                throw InputError.invalidHeader(file: url.path, field: field, reason: "unknown setting; known: \(known.sorted().joined(separator: ", "))")
            }
            normalised[k] = value
        }
        do {
            let clean = try JSONSerialization.data(withJSONObject: normalised)
            let config = try JSONDecoder().decode(TrainConfig.self, from: clean)
            try config.validate(file: url.path)
            return config
        } catch let error as DecodingError {
            throw InputError(decoding: error, file: url.path)
        } catch let error as InputError where error.file != url.path {
            // Raised inside the decoder (an unknown --flow), which does not know the file.
            throw error.filed(under: url.path)
        }
    }

    /// The steps `checkpoint_at` keeps: `log:N` gives round(exp(i·ln(steps)/(N−1))), i = 0…N−1
    /// (N ≥ 2; steps that round alike count once), a list gives its steps (each in 1…steps).
    public static func scheduledSteps(_ schedule: String, steps: Int, file: String = "flags") throws -> Set<Int> {
        let expected = "log:N (N ≥ 2 log-spaced steps) or a comma-separated list of steps in 1…\(steps)"
        func refuse() -> InputError { InputError.invalidValue(file: file, field: "checkpoint_at", expected: expected, found: schedule) }
        if schedule.hasPrefix("log:") {
            guard let n = Int(schedule.dropFirst(4)), n >= 2, n <= 10_000, steps >= 1 else { throw refuse() }
            let top = log(Double(steps))
            return Set((0..<n).map { min(steps, max(1, Int((exp(Double($0) * top / Double(n - 1))).rounded()))) })
        }
        let parts = schedule.split(separator: ",", omittingEmptySubsequences: false)
        let list = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, list.count == parts.count, list.allSatisfy({ (1...max(1, steps)).contains($0) }) else { throw refuse() }
        return Set(list)
    }

    /// `checkpointAt`'s steps (empty without one); the config was validated.
    public var scheduledCheckpoints: Set<Int> {
        checkpointAt.flatMap { try? Self.scheduledSteps($0, steps: steps) } ?? []
    }

    /// Rejects impossible settings before any work starts; `file` names where they came from.
    public func validate(file: String = "flags") throws {
        let settings = SettingsCheck(file: file)
        let check = settings.check
        try settings.model(layers: layers, heads: heads, dModel: dModel, seqLen: seqLen)
        if let kvHeads {
            try check(family != .gpt2 && family != .gptNeoX, "kv_heads",
                      "no value for a \(family.rawValue) model (it has no grouped-query attention)", kvHeads)
            try check(kvHeads > 0 && heads % kvHeads == 0, "kv_heads", "a positive divisor of heads (\(heads))", kvHeads)
        }
        if family == .gptNeoX {
            try check((dModel / max(1, heads)) % 8 == 0, "heads",
                      "a head size d_model/heads that is a multiple of 8 (gpt_neox rotates a quarter of each head, in pairs)",
                      "\(heads) (head size \(dModel / max(1, heads)))")
        } else if family != .gpt2 {
            try check((dModel / max(1, heads)) % 2 == 0, "heads", "a head size d_model/heads that is even (RoPE rotates pairs)", heads)
        }
        try settings.optimisation(batch: batch, steps: steps, lr: lr, minLR: minLR, warmup: warmup, weightDecay: weightDecay,
                                  beta1: beta1, beta2: beta2, clip: clip)
        try check(eps > 0, "eps", "a positive number", eps)
        try check(shards >= 1 && batch % max(1, shards) == 0, "shards", "a positive divisor of batch (\(batch))", shards)
        // Every game, the local-myopic flow and the gradient split train in shards (DataParallelStep).
        try check(validationFraction > 0 && validationFraction < 1, "validation_fraction", "in (0, 1)", validationFraction)
        try check(evalEvery > 0, "eval_every", "a positive integer", evalEvery)
        try check(evalWindows > 0, "eval_windows", "a positive integer", evalWindows)
        try check(logEvery > 0, "log_every", "a positive integer", logEvery)
        try check(checkpointEvery > 0, "checkpoint_every", "a positive integer", checkpointEvery)
        if let checkpointAt { _ = try Self.scheduledSteps(checkpointAt, steps: steps, file: file) }
        try check(logGradientSplit >= 0, "log_gradient_split", "zero (off) or a positive integer", logGradientSplit)
        try validateGame(file: file)
    }

    /// The game: a known name, knobs only for the game that reads them, each in range, and a flow
    /// the game can run under. (The exact consequence estimator's vocabulary limit is checked
    /// where the vocabulary is known: `checkGame(vocabSize:)`.)
    public func validateGame(file: String = "flags") throws {
        try validateGameKnobs(file: file)
        let settings = SettingsCheck(file: file)
        let check = settings.check
        switch game {
        case .teacherForced: break
        case .scheduledSampling(let rate):
            try check(rate >= 0 && rate <= 1, "sample_rate", "a probability in [0, 1]", rate)
        case .consequence(let s):
            // The vocabulary is checked where it is known (checkGame).
            try ConsequenceObjective.validate(s, seqLen: seqLen, vocabSize: 0, file: file)
        case .multiToken(let heads):
            try check(heads >= 1 && heads <= seqLen, "prediction_heads", "between 1 and seq_len (\(seqLen))", heads)
        }
        if let refusal = game.refusal(under: flow) {
            throw InputError.unsupported(file: settings.file, field: "game", value: refusal)
        }
    }

    /// The game's name is known and each knob set belongs to it.
    public func validateGameKnobs(file: String = "flags") throws {
        let check = SettingsCheck(file: file).check
        try check(TrainingGame.names.contains(gameName), "game", TrainingGame.names.joined(separator: ", "), gameName)
        let knobs: [(String, Any?, String)] = [
            ("sample_rate", sampleRate, "scheduled-sampling"), ("prediction_heads", predictionHeads, "multi-token"),
            ("consequence_weight", consequenceWeight, "consequence"), ("consequence_horizon", consequenceHorizon, "consequence"),
            ("consequence_positions", consequencePositions, "consequence"),
            ("consequence_estimator", consequenceEstimator?.rawValue, "consequence"),
        ]
        for (field, value, owner) in knobs {
            guard let value else { continue }
            try check(gameName == owner, field, "no value unless game is \(owner) (game is \(gameName))", value)
        }
    }

    /// Refuses fewer shards than the ranks of an MPI job (each rank computes at least one shard).
    public func checkShards(ranks: Int) throws {
        try Self.checkShards(shards, ranks: ranks)
    }

    /// The same for any run's `shards` (the synthetic tasks' too).
    public static func checkShards(_ shards: Int, ranks: Int) throws {
        if ranks > 1 && shards < ranks {
            throw InputError.invalidValue(file: "flags", field: "shards", expected: "at least the \(ranks) ranks of this MPI job (and a divisor of batch)",
                                          found: "\(shards)")
        }
    }

    /// What the game needs of the vocabulary: the exact consequence estimator scores every token.
    public func checkGame(vocabSize: Int, file: String = "settings") throws {
        if case .consequence(let s) = game {
            try ConsequenceObjective.validate(s, seqLen: seqLen, vocabSize: vocabSize, file: file)
        }
    }

    /// Bytes a run of these settings needs, roughly: weights, gradients and both AdamW moments,
    /// plus the activations kept for backward (per layer B·T·(16C + 3F) and the B·NH·T² attention
    /// pattern; logits B·T·V). Computed in Double, so absurd settings cannot overflow it.
    public func estimatedMemoryBytes(vocabSize: Int) -> Double {
        let c = Double(dModel), l = Double(layers), t = Double(seqLen), b = Double(batch)
        let v = Double(vocabSize), nh = Double(heads)
        let f = family == .gpt2 || family == .gptNeoX ? 4 * c : (8 * c / 3).rounded(.up)
        let mlpMatrices = family == .gpt2 || family == .gptNeoX ? 2.0 : 3.0
        let parameters = v * c + (family == .gpt2 ? t * c : 0) + l * (4 * c * c + mlpMatrices * c * f + 10 * c)
        let n = b * t, attention = b * nh * t * t
        var activations = l * (n * (16 * c + 3 * f) + attention) + n * (13 * c + 2 * f + v) + attention
        var weights = parameters
        switch game {
        case .multiToken(let heads):
            // Each extra head is one more block, its activations and a head's worth of scratch.
            let extra = Double(heads - 1)
            weights += extra * (4 * c * c + mlpMatrices * c * f + 10 * c)
            activations += extra * (n * (16 * c + 3 * f) + attention + 2 * n * c) + (heads > 1 ? n * v : 0)
        case .scheduledSampling:
            activations += n   // the mixed inputs
        case .consequence(let s):
            // Each sampled row keeps its distribution; the continuations' scratch is a chunk of rows.
            let candidates = s.estimator == .exact ? v : 1
            activations += b * Double(s.positions) * v + candidates * Double(s.horizon) * (16 * c + 3 * f + v + t)
        case .teacherForced:
            break
        }
        return 4 * (4 * weights + activations)
    }

    /// Refuses a run that cannot fit in this machine's memory, before anything is allocated.
    public func checkMemory(vocabSize: Int, file: String = "settings", available: Double = Double(ProcessInfo.processInfo.physicalMemory)) throws {
        let need = estimatedMemoryBytes(vocabSize: vocabSize)
        guard need <= available else {
            let gb = { (x: Double) in String(format: "%.1f GB", x / 1e9) }
            throw InputError.invalidValue(file: file, field: "layers, d_model, seq_len, batch",
                                           expected: "a run that fits in this machine's \(gb(available)) of memory", found: "one needing about \(gb(need))")
        }
    }

    /// The model these settings train. GPT-2: MLP width 4C. GPT-NeoX: MLP width 4C, a quarter of each
    /// head rotated, parallel residual, untied head (as Pythia). Llama and the families built like it
    /// (Qwen2, Qwen3, Mistral, Gemma 2, OLMo 2): gated MLP width 8C/3 rounded up to a multiple of 8
    /// (three matrices with as many weights as GPT-2's two), RoPE θ 10⁴, head tied to the embedding
    /// as in GPT-2 (and SmolLM2); each family's own structure (norms, biases, q/k norms), with no
    /// sliding window and, for Gemma 2, no soft-capping and the query scale 1/√HS.
    /// The multi-token game adds its extra heads (`mtp.{j}.*`, ModelConfig.predictionHeads).
    public func modelConfig(vocabSize: Int, tokenizer: String = ByteTokenizer.name) -> ModelConfig {
        var config: ModelConfig
        switch family {
        case .gpt2:
            config = ModelConfig(vocabSize: vocabSize, maxPositions: seqLen, dModel: dModel, nLayers: layers, nHeads: heads,
                                 tokenizer: tokenizer)
        case .gptNeoX:
            config = ModelConfig(vocabSize: vocabSize, maxPositions: seqLen, dModel: dModel, nLayers: layers, nHeads: heads,
                                 tokenizer: tokenizer)
            config.family = .gptNeoX
            config.activation = "gelu"
            config.rotaryFraction = 0.25
            config.tiedEmbeddings = false
        case .llama, .qwen2, .qwen3, .mistral, .gemma2, .olmo2:
            config = ModelConfig.llama(vocabSize: vocabSize, maxPositions: seqLen, dModel: dModel, nLayers: layers, nHeads: heads,
                                       nKVHeads: kvHeads, dMLP: (8 * dModel / 3 + 7) / 8 * 8, tiedEmbeddings: true,
                                       tokenizer: tokenizer)
            config.family = family
            if family == .gemma2 { config.activation = "gelu_pytorch_tanh" }
        }
        if case .multiToken(let n) = game { config.predictionHeads = n }
        return config
    }

    public var schedule: LearningRateSchedule {
        LearningRateSchedule(maxLR: lr, minLR: minLR, warmupSteps: warmup, totalSteps: steps)
    }

    public var optimizer: AdamW {
        AdamW(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, noDecay: noDecay)
    }
}

extension TrainConfig.CodingKeys: CaseIterable {
    static var allKeys: [String] { allCases.map(\.rawValue) }
}
