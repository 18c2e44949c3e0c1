import ArgumentParser
import Foundation
import Myopia

/// The training game and its knobs (TrainingGame, docs/games.md), for every command that trains a
/// token model. Each knob belongs to one game; a knob for another game is refused.
struct GameFlags: ParsableArguments {
    @Option(help: "Training game: teacher-forced (default), scheduled-sampling, consequence or multi-token (docs/games.md).")
    var game: String?
    @Option(name: .customLong("sample-rate"), parsing: .unconditional, help: "scheduled-sampling: the probability ρ that an input is the model's own sample (default 0.25).")
    var sampleRate: Double?
    @Option(name: .customLong("consequence-weight"), parsing: .unconditional, help: "consequence: the weight λ of the policy-gradient term (default 0.5).")
    var consequenceWeight: Double?
    @Option(name: .customLong("consequence-horizon"), parsing: .unconditional, help: "consequence: K, the ground-truth tokens scored after the sampled one (default 4).")
    var consequenceHorizon: Int?
    @Option(name: .customLong("consequence-positions"), parsing: .unconditional, help: "consequence: M, the positions per window that draw a token (default 4).")
    var consequencePositions: Int?
    @Option(name: .customLong("consequence-estimator"), help: "consequence: sampled (one draw per position, default) or exact (every token of a small vocabulary).")
    var consequenceEstimator: String?
    @Option(name: .customLong("prediction-heads"), parsing: .unconditional, help: "multi-token: N, the tokens t+1 … t+N each position predicts (default 2).")
    var predictionHeads: Int?

    /// Whether any game flag was given.
    var anyGiven: Bool {
        game != nil || sampleRate != nil || consequenceWeight != nil || consequenceHorizon != nil
            || consequencePositions != nil || consequenceEstimator != nil || predictionHeads != nil
    }

    /// Applies the given flags to `config` (a `--config` file's game, or the default). A new
    /// `--game` drops the file's knobs for the game it replaces; the result records every knob of
    /// its game explicitly.
    func apply(to config: inout TrainConfig) throws {
        if let game {
            guard TrainingGame.names.contains(game) else {
                throw InputError.invalidValue(file: "flags", field: "game", expected: TrainingGame.names.joined(separator: ", "), found: game)
            }
            if game != config.gameName { config.game = .teacherForced }
            config.gameName = game
        }
        try setKnobs(of: &config)
        try config.validateGameKnobs(file: "flags")
        config.game = config.game
    }

    /// Sets the knobs given in `config`, whatever its game (`myopia games` reads them as the
    /// knobs of every game it trains that `--games` leaves unset).
    func setKnobs(of config: inout TrainConfig) throws {
        if let sampleRate { config.sampleRate = sampleRate }
        if let consequenceWeight { config.consequenceWeight = consequenceWeight }
        if let consequenceHorizon { config.consequenceHorizon = consequenceHorizon }
        if let consequencePositions { config.consequencePositions = consequencePositions }
        if let consequenceEstimator {
            guard let estimator = ConsequenceEstimator(rawValue: consequenceEstimator) else {
                throw InputError.invalidValue(file: "flags", field: "consequence_estimator", expected: "sampled or exact", found: consequenceEstimator)
            }
            config.consequenceEstimator = estimator
        }
        if let predictionHeads { config.predictionHeads = predictionHeads }
    }
}
