import Foundation
import Myopia

/// The plan of `myopia reproduce wu2024`: every setting of every section, fixed by the budget
/// (30m, 2h, 8h or --quick) and the seed, written to plan.json before any work, so that a rerun or
/// a resume does exactly the same work.
extension Reproduce {
    /// The plans: what each budget buys. A budget in seconds gets the largest plan that fits.
    public enum Tier: String, Codable, CaseIterable, Sendable {
        case quick
        case halfHour = "30m"
        case twoHours = "2h"
        case eightHours = "8h"

        public var seconds: Double {
            switch self {
            case .quick: return 300
            case .halfHour: return 1800
            case .twoHours: return 7200
            case .eightHours: return 28_800
            }
        }

        /// The largest plan that fits in `budget` seconds; nil below the smallest (30 minutes).
        public static func fitting(_ budget: Double) -> Tier? {
            [Tier.eightHours, .twoHours, .halfHour].first { $0.seconds <= budget + 0.5 }
        }
    }

    /// One synthetic sine task (p, f), trained vanilla and myopic over the sine seeds.
    public struct SineSpec: Codable, Equatable, Sendable {
        public var name: String
        /// The task is in `options.task`; flow and seed are set per run.
        public var options: SineExperiment.Options
    }

    /// The pretrained-model experiment: fine-tunes of one checkpoint, myopic vs vanilla (the gap)
    /// and local-myopic vs vanilla (the bonus).
    public struct PretrainedPlan: Codable, Equatable, Sendable {
        /// A model name (`smollm2-135m`) or, for --quick, a run folder relative to the output folder.
        public var model: String
        /// How the model is named in the table and the report.
        public var label: String
        /// Fine-tuning settings (the shape and tokenizer are the model's).
        public var config: TrainConfig
        public var seeds: [UInt64]
        /// Validation windows the fine-tunes are scored on (a 135M model scores slowly on 2 cores).
        public var validationWindows: Int

        enum CodingKeys: String, CodingKey {
            case model, label, config, seeds
            case validationWindows = "validation_windows"
        }
    }

    public struct Plan: Codable, Equatable, Sendable {
        public var paper: String
        public var tier: Tier
        public var budgetSeconds: Double
        public var seed: UInt64
        public var sine: [SineSpec]
        public var sineSeeds: [UInt64]
        /// Fresh sequences the regression probes read, and the lags i of sin(f·x_{n−i}) probed.
        public var sineProbeSequences: Int
        public var sineProbeLags: [Int]
        /// Why a published sine setting is not in this plan (f = 10 on the small budgets).
        public var sineNotRun: String?
        /// The text gap: data, GPT-2 tokenizer, T 64; flow and seed set per run.
        public var text: TrainConfig
        public var textSeeds: [UInt64]
        public var textFlows: [GradientFlow]
        public var dynamics: Dynamics.Options
        /// The local myopia bonus: fine-tuning settings from the text gap's first vanilla model.
        public var bonus: TrainConfig
        public var bonusSeeds: [UInt64]
        public var pretrained: PretrainedPlan
        /// Expected seconds of each section on a shared 2-core machine, for the ETA.
        public var expectedSeconds: [String: Double]

        enum CodingKeys: String, CodingKey {
            case paper, tier, seed, sine, text, dynamics, bonus, pretrained
            case budgetSeconds = "budget_seconds", sineSeeds = "sine_seeds", sineProbeSequences = "sine_probe_sequences"
            case sineProbeLags = "sine_probe_lags", sineNotRun = "sine_not_run", textSeeds = "text_seeds"
            case textFlows = "text_flows", bonusSeeds = "bonus_seeds", expectedSeconds = "expected_seconds"
        }

        /// The plan of a tier; `budget` is recorded (the tier is what decides the work).
        public static func make(_ tier: Tier, seed: UInt64 = 1, budget: Double? = nil) -> Plan {
            let seeds3 = [seed, seed &+ 1, seed &+ 2]
            func sine(_ p: Double, _ f: Double, steps: Int, dModel: Int, seqLen: Int, batch: Int) -> SineSpec {
                var o = SineExperiment.Options()
                o.task = SineTask(p: p, frequency: f, window: SineTask.publishedWindow)
                o.layers = 2; o.heads = 2; o.dModel = dModel; o.seqLen = seqLen; o.batch = batch
                o.steps = steps; o.warmup = max(1, steps / 16); o.lr = 3e-3; o.minLR = 3e-4
                o.evalEvery = max(1, steps / 4); o.logEvery = max(1, steps / 40)
                o.validationSequences = tier == .quick ? 64 : 512
                func number(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
                return SineSpec(name: "sine-p\(number(p))-f\(number(f))", options: o)
            }
            var text = TrainConfig()
            text.data = "tinyshakespeare"
            text.tokenizer = "gpt2"
            text.seqLen = 64
            text.seed = seed
            var bonus = TrainConfig()
            var pretrained = TrainConfig()
            var dynamics = Dynamics.Options()
            var plan: Plan
            switch tier {
            case .quick:
                let specs = [sine(0.3, 3, steps: 40, dModel: 16, seqLen: 16, batch: 16), sine(1, 3, steps: 40, dModel: 16, seqLen: 16, batch: 16)]
                text.layers = 1; text.heads = 2; text.dModel = 16; text.seqLen = 16; text.batch = 4
                text.steps = 16; text.warmup = 2; text.lr = 3e-3; text.minLR = 3e-4
                text.evalEvery = 8; text.evalWindows = 4; text.logEvery = 2; text.checkpointEvery = 8; text.logGradientSplit = 4
                text.checkpointAt = "log:4"
                text.validationFraction = 0.02   // every run is scored on the whole split: keep it short
                dynamics.evalWindows = 4; dynamics.horizonSequences = 2; dynamics.probePositions = 256; dynamics.probeTop = 16; dynamics.batch = 4
                bonus = text
                bonus.steps = 6; bonus.warmup = 1; bonus.lr = 1e-3; bonus.minLR = 1e-4; bonus.evalEvery = 6; bonus.checkpointEvery = 6
                bonus.checkpointAt = nil; bonus.logGradientSplit = 0
                pretrained = bonus
                pretrained.steps = 4; pretrained.evalEvery = 4; pretrained.checkpointEvery = 4
                plan = Plan(paper: "wu2024", tier: tier, budgetSeconds: budget ?? tier.seconds, seed: seed, sine: specs,
                            sineSeeds: [seed, seed &+ 1], sineProbeSequences: 64, sineProbeLags: Array(0...4),
                            sineNotRun: "--quick trains tiny models at frequency 3 only",
                            text: text, textSeeds: seeds3, textFlows: [.vanilla, .myopic, .bigram], dynamics: dynamics,
                            bonus: bonus, bonusSeeds: [seed, seed &+ 1],
                            pretrained: PretrainedPlan(model: "text-gap/vanilla-seed\(seed)",
                                                       label: "tiny stand-in (the text gap's vanilla seed \(seed) model; --quick does not load SmolLM2-135M-Instruct Q4_1)",
                                                       config: pretrained, seeds: [seed, seed &+ 1], validationWindows: 8),
                            expectedSeconds: [:])
            case .halfHour, .twoHours, .eightHours:
                let big = tier == .eightHours, mid = tier == .twoHours
                let sineSteps = big ? 4000 : mid ? 1500 : 600
                let sineWidth = big ? 128 : 64
                var specs = [sine(0.3, 3, steps: sineSteps, dModel: sineWidth, seqLen: 32, batch: 64),
                             sine(1, 3, steps: sineSteps, dModel: sineWidth, seqLen: 32, batch: 64)]
                if tier != .halfHour {
                    specs += [sine(0.3, 10, steps: sineSteps, dModel: sineWidth, seqLen: 64, batch: 64),
                              sine(1, 10, steps: sineSteps, dModel: sineWidth, seqLen: 64, batch: 64)]
                }
                text.layers = big ? 6 : 4; text.heads = 4; text.dModel = big ? 256 : mid ? 128 : 64
                text.layers = tier == .halfHour ? 2 : text.layers
                text.batch = big ? 16 : 8
                text.steps = big ? 4000 : mid ? 1200 : 300
                text.warmup = text.steps / 10; text.lr = 2e-3; text.minLR = 2e-4
                text.evalEvery = text.steps / 4; text.evalWindows = 16; text.logEvery = 10
                text.checkpointEvery = text.steps / 4; text.logGradientSplit = text.steps / 20
                text.checkpointAt = big ? "log:24" : mid ? "log:16" : "log:10"
                dynamics.evalWindows = 32; dynamics.horizonSequences = 4; dynamics.probePositions = 2048; dynamics.probeTop = 64
                bonus = text
                bonus.steps = big ? 1000 : mid ? 300 : 100
                bonus.warmup = bonus.steps / 10; bonus.lr = 3e-4; bonus.minLR = 3e-5
                bonus.evalEvery = bonus.steps; bonus.checkpointEvery = bonus.steps / 2; bonus.checkpointAt = nil; bonus.logGradientSplit = 0
                pretrained = TrainConfig()
                pretrained.data = "tinyshakespeare"
                pretrained.seqLen = 64; pretrained.batch = 2
                pretrained.steps = big ? 200 : mid ? 40 : 10
                pretrained.warmup = max(1, pretrained.steps / 10); pretrained.lr = 1e-4; pretrained.minLR = 1e-5
                pretrained.evalEvery = pretrained.steps; pretrained.evalWindows = 4; pretrained.logEvery = 1
                pretrained.checkpointEvery = pretrained.steps
                plan = Plan(paper: "wu2024", tier: tier, budgetSeconds: budget ?? tier.seconds, seed: seed, sine: specs,
                            sineSeeds: tier == .halfHour ? [seed, seed &+ 1] : seeds3, sineProbeSequences: 1024,
                            sineProbeLags: Array(0...10),
                            sineNotRun: tier == .halfHour ? "the 30m plan runs frequency 3 only (--budget 2h adds the published f = 10)" : nil,
                            text: text, textSeeds: seeds3, textFlows: [.vanilla, .myopic, .bigram], dynamics: dynamics,
                            bonus: bonus, bonusSeeds: seeds3,
                            pretrained: PretrainedPlan(model: "smollm2-135m", label: "SmolLM2-135M-Instruct Q4_1",
                                                       config: pretrained, seeds: tier == .halfHour ? [seed, seed &+ 1] : seeds3,
                                                       validationWindows: big ? 64 : 16),
                            expectedSeconds: [:])
            }
            plan.expectedSeconds = plan.estimate()
            return plan
        }

        /// The sections, in the order they run.
        public var sections: [Section] {
            sine.map { .sine($0.name) } + [.textGap, .dynamics, .bonus, .pretrainedGap, .pretrainedBonus]
        }

        /// A rough cost model (seconds on a shared 2-core Zen 4, measured at load average 3–6 on the
        /// 30m plan) for the ETA; the runner rescales it by how fast the finished sections ran.
        func estimate() -> [String: Double] {
            var out: [String: Double] = [:]
            for s in sine {
                let o = s.options
                let work = Double(o.steps * o.batch * o.seqLen) * Double(o.dModel * o.dModel)
                out[Section.sine(s.name).name] = Double(2 * sineSeeds.count) * work * 5e-9 + 2
            }
            func lm(_ c: TrainConfig, vocab: Double, params: Double) -> Double {
                let tokens = Double(c.steps * c.batch * c.seqLen)
                return tokens * (vocab * Double(c.dModel) + params) * 6 * 1.5e-11
            }
            let body = Double(12 * text.layers * text.dModel * text.dModel)
            out[Section.textGap.name] = Double(textSeeds.count * textFlows.count) * (lm(text, vocab: 50257, params: body) + 3)
            let kept = Double(text.scheduledCheckpoints.count + 2)
            out[Section.dynamics.name] = kept * Double(dynamics.evalWindows + 4 * dynamics.horizonSequences) * 0.15
            out[Section.bonus.name] = Double(2 * bonusSeeds.count) * (lm(bonus, vocab: 50257, params: body) * 1.4 + 3)
            let smol = pretrained.model == "smollm2-135m"
            let ft = smol ? Double(pretrained.config.steps * pretrained.config.batch * pretrained.config.seqLen) * 135e6 * 6 * 2.5e-11
                + Double(pretrained.validationWindows) * 1.5 : 2
            out[Section.pretrainedGap.name] = Double(2 * pretrained.seeds.count) * ft + (smol ? 20 : 1)
            out[Section.pretrainedBonus.name] = Double(2 * pretrained.seeds.count) * ft * 1.3 + (smol ? 20 : 1)
            return out
        }

        /// Rejects a plan that could not run, before any work starts.
        public func validate() throws {
            let check = SettingsCheck(file: "reproduce plan").check
            for s in sine { try s.options.validate(file: "reproduce plan (\(s.name))") }
            try text.validate(file: "reproduce plan (text)")
            try bonus.validate(file: "reproduce plan (bonus)")
            try check(textSeeds.count >= 3, "text_seeds", "at least 3 seeds (an interval per position)", textSeeds.count)
            try check(sineSeeds.count >= 2 && bonusSeeds.count >= 2 && pretrained.seeds.count >= 2,
                      "sine_seeds, bonus_seeds, pretrained.seeds", "at least 2 seeds each (an interval)",
                      "\(sineSeeds.count), \(bonusSeeds.count), \(pretrained.seeds.count)")
            try check(textFlows.prefix(2) == [.vanilla, .myopic], "text_flows", "vanilla, myopic first", textFlows)
            try check(text.checkpointAt != nil, "text.checkpoint_at", "a schedule (the dynamics read it)", "none")
            try check(sineProbeLags.contains(0) && sineProbeLags.allSatisfy { lag in sine.allSatisfy { (0..<$0.options.seqLen).contains(lag) } },
                      "sine_probe_lags", "lag 0 and lags below every task's seq_len", sineProbeLags)
            try check(sineProbeSequences > 1, "sine_probe_sequences", "at least 2 (train and held out)", sineProbeSequences)
            try check(pretrained.validationWindows > 0, "pretrained.validation_windows", "a positive integer", pretrained.validationWindows)
        }
    }

    /// A part of the plan that is finished as a whole: its result is saved, and a resumed run
    /// reads it instead of redoing it.
    public enum Section: Equatable, Sendable, CustomStringConvertible {
        case sine(String)
        case textGap, dynamics, bonus, pretrainedGap, pretrainedBonus

        /// Its folder inside the output folder (and its key in expected_seconds).
        public var name: String {
            switch self {
            case .sine(let name): return name
            case .textGap: return "text-gap"
            case .dynamics: return "dynamics"
            case .bonus: return "bonus"
            case .pretrainedGap: return "pretrained-gap"
            case .pretrainedBonus: return "pretrained-bonus"
            }
        }

        public var description: String { name }
    }
}
