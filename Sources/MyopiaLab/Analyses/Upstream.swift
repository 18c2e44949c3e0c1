import Foundation
import Myopia

/// One cell of the upstream table (docs/games.md, "The upstream table"): a free variable at
/// position i, and the loss terms whose *target* is token i+1+k.
public struct UpstreamCell: Codable, Equatable, Sendable {
    /// "activations" (a residual stream h_{l,i}, or with `layer` nil their mean over l = 0…L),
    /// "outputs" (the token the model samples at position i, x̂_{i+1}) or "weights" (a summary row:
    /// the weights sit at no position, so it has offset 0 only).
    public var variable: String
    /// The residual stream l = 0…L (L: after the last block); nil for the mean, outputs and weights.
    public var layer: Int?
    /// k ≥ 0: the loss terms whose target is token i+1+k.
    public var offset: Int
    /// How much those losses depend on the variable at all (activations: the norm of the true
    /// gradient; outputs: E|ℓ(x̂) − ℓ(x)| when the output is resampled).
    public var upstream: Double
    /// The norm of the part of the training gradient (under the game and the flow) that runs
    /// through that path.
    public var optimised: Double
    /// 95% intervals over windows, where the number is estimated ([x, x] where it is exact).
    public var upstreamCI: [Double]
    public var optimisedCI: [Double]

    enum CodingKeys: String, CodingKey {
        case variable, layer, offset, upstream, optimised
        case upstreamCI = "upstream_ci", optimisedCI = "optimised_ci"
    }

    public init(variable: String, layer: Int?, offset: Int, upstream: Double, optimised: Double,
                upstreamCI: [Double], optimisedCI: [Double]) {
        self.variable = variable
        self.layer = layer
        self.offset = offset
        self.upstream = upstream
        self.optimised = optimised
        self.upstreamCI = upstreamCI
        self.optimisedCI = optimisedCI
    }

    /// Encodes `layer` as null when absent (the JSON always has every key).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(variable, forKey: .variable)
        try c.encode(layer, forKey: .layer)
        try c.encode(offset, forKey: .offset)
        try c.encode(upstream, forKey: .upstream)
        try c.encode(optimised, forKey: .optimised)
        try c.encode(upstreamCI, forKey: .upstreamCI)
        try c.encode(optimisedCI, forKey: .optimisedCI)
    }
}

/// What `myopia upstream` measures: for a model, a game and a flow, which free variables are
/// upstream of which loss terms, and which of those paths the training gradient optimises.
public struct UpstreamTable: Codable, Equatable, Sendable {
    /// The file `myopia upstream --out` writes.
    public static let fileName = "upstream.json"
    /// The game's name and its knobs, as `--game` and `run_config.json` spell them.
    public var game: String
    public var gameSettings: TrainingGame
    public var flow: String
    public var cells: [UpstreamCell]
    /// Windows measured, their length, the model's layers, the largest offset.
    public var windows: Int
    public var seqLen: Int
    public var layers: Int
    public var maxOffset: Int
    /// Resamples of each output per window (the outputs' row is an estimate over them).
    public var draws: Int

    enum CodingKeys: String, CodingKey {
        case game, flow, cells, windows, layers, draws
        case gameSettings = "game_settings", seqLen = "seq_len", maxOffset = "max_offset"
    }

    /// The cell of `variable` (and `layer`) at offset k, if measured.
    public func cell(_ variable: String, layer: Int? = nil, offset k: Int) -> UpstreamCell? {
        cells.first { $0.variable == variable && $0.layer == layer && $0.offset == k }
    }
}

/// Measures the upstream table (docs/games.md).
public enum Upstream {
    public struct Options: Sendable {
        /// Windows of T+1 tokens measured (consecutive, from the start of the tokens).
        public var windows = 16
        /// The largest offset k in the table (nil: T − 1).
        public var maxOffset: Int? = nil
        /// Resamples of each position's output per window.
        public var draws = 4
        /// Keys the resamples and the game's own draws.
        public var seed: UInt64 = 1
        /// Windows per forward pass.
        public var batch = 8

        public init(windows: Int = 16, maxOffset: Int? = nil, draws: Int = 4, seed: UInt64 = 1, batch: Int = 8) {
            self.windows = windows
            self.maxOffset = maxOffset
            self.draws = draws
            self.seed = seed
            self.batch = batch
        }
    }
}

extension Upstream {
    /// The upstream table of `model` on up to `options.windows` consecutive windows of `seqLen`+1
    /// tokens, for `game` and `flow` (docs/games.md, "The upstream table"). Every number is
    /// computed on the model under the game's own rules (its draws, knobs and losses):
    ///
    /// - activations, upstream: ‖∂ℓ/∂h_{l,i}‖ by the true gradient (the vanilla flow) for the loss
    ///   terms whose target is i+1+k, on the inputs the game trains on; optimised: the same under
    ///   `flow`. One exact channel backward (`horizonBackward`, so teacher forcing's upstream row is
    ///   `myopia horizon`); with extra prediction heads, one backward per target token (every
    ///   head's term with that target, each weighted 1/N as in the objective);
    /// - outputs, upstream: E|w·(ℓ(x̂) − ℓ(x))| when the token sampled at position i replaces
    ///   x_{i+1} wherever the game reads it (`w` the weight the objective gives that loss: 1 for
    ///   scheduled sampling, λ/K for the consequence game's continuation terms), over `draws`
    ///   resamples per window; optimised: the norm of the policy-gradient term that loss produces
    ///   at position i's logits, (λ/K)·|ℓ(x̂) − ℓ(x)|·‖onehot(x̂) − p‖ (a game without one: 0);
    /// - weights (offset 0): the norms of the game's whole gradient under the vanilla flow and
    ///   under `flow`, per batch of windows.
    ///
    /// Intervals are 95% normal intervals over windows (batches for the weights).
    public static func measure(_ model: Transformer, tokens: [Int32], seqLen t: Int, game: TrainingGame, flow: GradientFlow,
                               options: Options = .init(), progress: (Int, Int) -> Void = { _, _ in }) throws -> UpstreamTable {
        let config = model.config
        guard !config.isContinuous else {
            throw InputError.unsupported(file: "model", field: "myopia_outputs", value: "a model with continuous heads: its outputs are numbers, never read back, and it has no games")
        }
        guard flow != .localMyopic else {
            throw InputError.unsupported(file: "flags", field: "flow", value: "local-myopic: the table's gradients are the horizon's, which does not run under a reference model's past")
        }
        if let refusal = game.refusal(under: flow) { throw InputError.unsupported(file: "flags", field: "game", value: refusal) }
        let heads: Int
        if case .multiToken(let n) = game { heads = n } else { heads = 1 }
        if heads > 1 && config.predictionHeads != heads {
            throw InputError.invalidValue(file: "model", field: "myopia_prediction_heads", expected: "\(heads) for \(game)",
                                          found: "\(config.predictionHeads)")
        }
        if case .consequence(let s) = game { try ConsequenceObjective.validate(s, seqLen: t, vocabSize: config.vocabSize) }
        guard options.windows > 0, options.draws > 0, options.batch > 0 else {
            throw InputError.invalidValue(file: "flags", field: "windows, draws, batch", expected: "positive integers",
                                          found: "\(options.windows), \(options.draws), \(options.batch)")
        }
        let windows = min(options.windows, TokenDataset.windows(tokens, seqLen: t))
        guard windows > 0 else {
            throw InputError.invalidValue(file: "data", field: "tokens", expected: "at least one window of \(t + 1) tokens",
                                          found: "\(tokens.count) tokens")
        }
        let k = min(options.maxOffset ?? (t - 1), t - 1), layers = config.nLayers
        let savedFlow = model.flow
        model.flow = flow
        defer { model.flow = savedFlow }
        // The true gradient: the vanilla flow, with the forward the run's flow implies (bigram).
        let trueFlow: GradientFlow = flow == .bigram ? .bigram : .vanilla
        let savedGrads = model.params.gradArray()
        defer { savedGrads.withUnsafeBufferPointer { model.params.grads.update(from: $0.baseAddress!, count: $0.count) } }

        let stride = (layers + 1) * (k + 1)
        var upstream = [[Double]](repeating: [Double](repeating: 0, count: stride), count: windows)
        var optimised = upstream
        let work = 3
        progress(0, work)
        if heads > 1 {
            try perTargetActivations(model, tokens: tokens, seqLen: t, windows: windows, maxOffset: k, batch: options.batch,
                                     trueFlow: trueFlow, flow: flow, upstream: &upstream, optimised: &optimised)
        } else {
            for (pass, passFlow) in passFlows(trueFlow, flow).enumerated() {
                var runners: [Int: GameRunner] = [:]
                var inputs = [Int32](repeating: 0, count: min(options.batch, windows) * t), targets = inputs
                _ = Horizon.accumulate(model, sequences: windows, seqLen: t, maxOffset: k, flow: passFlow, batch: options.batch,
                                       progress: { _, _ in }, perSequence: { s, sums in
                                           if pass == 0 { upstream[s] = Array(sums) }
                                           if pass == 1 || flow == trueFlow { optimised[s] = Array(sums) }
                                       }) { first, count, cache in
                    // The game's own forward pass (its draws at step `first / batch + 1`): the inputs it trains on.
                    TokenDataset.fillWindows(tokens, seqLen: t, first: first, count: count, inputs: &inputs, targets: &targets)
                    let runner = runners[count] ?? GameRunner(game: game, model: model, cache: cache, batch: count, seqLen: t,
                                                              seed: options.seed)
                    runners[count] = runner
                    inputs.withUnsafeBufferPointer { x in
                        targets.withUnsafeBufferPointer { y in
                            _ = runner.forward(step: first / options.batch + 1, inputs: x.baseAddress!, targets: y.baseAddress!)
                        }
                    }
                }
            }
        }
        progress(1, work)
        let outputs = try outputRows(model, tokens: tokens, seqLen: t, game: game, windows: windows, maxOffset: k, options: options)
        progress(2, work)
        let weights = weightRow(model, tokens: tokens, seqLen: t, game: game, windows: windows, trueFlow: trueFlow, flow: flow,
                                options: options)
        progress(3, work)

        // Per-window means, then the mean and interval over windows.
        var cells: [UpstreamCell] = []
        for l in 0...(layers + 1) {
            for offset in 0...k {
                let positions = Double(t - offset)
                func perWindow(_ sums: [[Double]]) -> [Double] {
                    sums.map { w in
                        l <= layers ? w[l * (k + 1) + offset] / positions
                            : (0...layers).reduce(0.0) { $0 + w[$1 * (k + 1) + offset] } / positions / Double(layers + 1)
                    }
                }
                let (u, uci) = Self.meanAndInterval(perWindow(upstream)), (o, oci) = Self.meanAndInterval(perWindow(optimised))
                cells.append(UpstreamCell(variable: "activations", layer: l <= layers ? l : nil, offset: offset,
                                          upstream: u, optimised: o, upstreamCI: uci, optimisedCI: oci))
            }
        }
        for offset in 0...k {
            let (u, uci) = Self.meanAndInterval(outputs.upstream.map { $0[offset] })
            let (o, oci) = Self.meanAndInterval(outputs.optimised.map { $0[offset] })
            cells.append(UpstreamCell(variable: "outputs", layer: nil, offset: offset, upstream: u, optimised: o,
                                      upstreamCI: uci, optimisedCI: oci))
        }
        let (wu, wuci) = Self.meanAndInterval(weights.upstream), (wo, woci) = Self.meanAndInterval(weights.optimised)
        cells.append(UpstreamCell(variable: "weights", layer: nil, offset: 0, upstream: wu, optimised: wo, upstreamCI: wuci,
                                  optimisedCI: woci))
        return UpstreamTable(game: game.name, gameSettings: game, flow: flow.description, cells: cells, windows: windows,
                             seqLen: t, layers: layers, maxOffset: k, draws: options.draws)
    }

    /// The flows of the two passes, true then training; one pass when they are the same flow (the
    /// vanilla flow's training gradient is the true one).
    static func passFlows(_ trueFlow: GradientFlow, _ flow: GradientFlow) -> [GradientFlow] {
        flow == trueFlow ? [trueFlow] : [trueFlow, flow]
    }

    /// The mean of `values` and its 95% normal interval, mean ± 1.96·s/√n (n − 1 in s); [x, x] for
    /// one value, and for values that are all equal (an exact number).
    static func meanAndInterval(_ values: [Double]) -> (Double, [Double]) {
        let n = Double(values.count)
        guard values.count > 0 else { return (.nan, [.nan, .nan]) }
        let mean = values.reduce(0, +) / n
        guard values.count > 1, values.contains(where: { $0 != values[0] }) else { return (mean, [mean, mean]) }
        let sd = (values.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
        let half = 1.96 * sd / n.squareRoot()
        return (mean, [mean - half, mean + half])
    }

    /// With extra prediction heads: for every target token τ = 1…T, one forward and backward pass
    /// with every target but x_τ masked, batch by batch of windows (so each head's term with that
    /// target counts once per window, and its 1/count is undone), reading dL/dh_{l,i} for every
    /// layer and position i < τ.
    static func perTargetActivations(_ model: Transformer, tokens: [Int32], seqLen t: Int, windows: Int, maxOffset k: Int,
                                     batch: Int, trueFlow: GradientFlow, flow: GradientFlow,
                                     upstream: inout [[Double]], optimised: inout [[Double]]) throws {
        let b = min(batch, windows), c = model.config.dModel
        let cache = model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        // The observer may escape: it writes into locals, copied back at the end.
        var up = upstream, opt = optimised
        defer { upstream = up; optimised = opt }
        var first = 0
        while first < windows {
            let count = min(b, windows - first)
            TokenDataset.fillWindows(tokens, seqLen: t, first: first, count: count, inputs: &inputs, targets: &targets)
            for tau in 1...t {
                var masked = [Int32](repeating: CrossEntropy.ignoreIndex, count: count * t)
                for s in 0..<count { masked[s * t + tau - 1] = targets[s * t + tau - 1] }
                // Under the vanilla flow (or bigram) the training gradient is the true one: one pass.
                for (pass, passFlow) in passFlows(trueFlow, flow).enumerated() {
                    model.flow = passFlow
                    model.forward(tokens: Array(inputs[..<(count * t)]), targets: masked, batch: count, seqLen: t, cache: cache)
                    _ = model.forwardPredictionHeads(cache: cache)
                    model.params.zeroGrads()
                    model.backwardPredictionHeads(cache: cache) { l, d in
                        // Row (s, i) holds (1/count)·Σ_j (1/N)·∂ℓ_{j}/∂h_{l,i} for the terms with target τ.
                        for s in 0..<count {
                            for i in max(0, tau - 1 - k)...(tau - 1) {
                                let g = d + (s * t + i) * c
                                var sq = 0.0
                                for j in 0..<c { sq += Double(g[j]) * Double(g[j]) }
                                let norm = sq.squareRoot() * Double(count)
                                let index = l * (k + 1) + (tau - 1 - i)
                                if pass == 0 { up[first + s][index] += norm }
                                if pass == 1 || flow == trueFlow { opt[first + s][index] += norm }
                            }
                        }
                    }
                }
            }
            model.flow = flow
            first += count
        }
    }

    /// The outputs' row: per window, the sums over draws and positions of w·|Δℓ| and of the policy
    /// term's norm at each offset, divided by the (draw, position) pairs that have that offset.
    static func outputRows(_ model: Transformer, tokens: [Int32], seqLen t: Int, game: TrainingGame, windows: Int,
                           maxOffset k: Int, options: Options) throws -> (upstream: [[Double]], optimised: [[Double]]) {
        let v = model.config.vocabSize, draws = options.draws
        let random = KeyedRandom(seed: options.seed)
        var upstream = [[Double]](repeating: [Double](repeating: 0, count: k + 1), count: windows), optimised = upstream
        // Where the game reads the output sampled at position i, and how its objective weighs the
        // losses that then depend on it: (weight of each loss, its policy-gradient coefficient,
        // the offsets it reaches).
        struct Reading { var lossWeight: Double; var policyWeight: Double; var offsets: ClosedRange<Int> }
        var pool = [Int](repeating: 0, count: t), chosen = [Int](repeating: 0, count: t)
        func reading(window w: Int, draw d: Int, position i: Int) -> Reading? {
            switch game {
            case .teacherForced, .multiToken:
                return nil   // the next input is the ground truth whatever the model output
            case .scheduledSampling(let rate):
                guard random.uniform(.replace, step: d + 1, sequence: w, position: i + 1) < rate else { return nil }
                return Reading(lossWeight: 1, policyWeight: 0, offsets: 1...max(1, t - 1))
            case .consequence(let s):
                let m = s.positions, horizon = s.horizon
                let hit = pool.withUnsafeMutableBufferPointer { p in
                    chosen.withUnsafeMutableBufferPointer { out in
                        ConsequenceObjective.drawPositions(random, step: d + 1, sequence: w, choices: t - horizon, count: m,
                                                           pool: p.baseAddress!, into: out.baseAddress!)
                        return out.prefix(m).contains(i)
                    }
                }
                guard hit else { return nil }
                let weight = s.weight / Double(horizon)
                return Reading(lossWeight: abs(weight), policyWeight: abs(weight), offsets: 1...horizon)
            }
        }
        struct Job { var window: Int; var position: Int; var token: Int32; var reading: Reading; var pNorm: Double }
        let b = min(options.batch, windows)
        let cache = model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var baseline = [Float](repeating: 0, count: windows * t)
        var probabilities = [Float](repeating: 0, count: v), logZ = [Double](repeating: .nan, count: t)
        var sumSquares = [Double](repeating: 0, count: t)
        var jobs: [Job] = []
        var first = 0
        while first < windows {
            let count = min(b, windows - first)
            TokenDataset.fillWindows(tokens, seqLen: t, first: first, count: count, inputs: &inputs, targets: &targets)
            model.forward(tokens: Array(inputs[..<(count * t)]), targets: Array(targets[..<(count * t)]), batch: count, seqLen: t,
                          cache: cache)
            let losses = cache.positionLosses()
            for s in 0..<count {
                let w = first + s
                for i in 0..<t { baseline[w * t + i] = losses[s * t + i] }
                // Each position's log-partition and Σ p², taken once when a draw first needs them:
                // ‖onehot(x̂) − p‖² = Σ p² − 2·p(x̂) + 1.
                for i in 0..<t { logZ[i] = .nan }
                for d in 0..<draws {
                    for i in 0..<(t - 1) {
                        guard let r = reading(window: w, draw: d, position: i) else { continue }
                        let row = cache.logitRows + (s * t + i) * v
                        let token = KeyedRandom.sample(logits: row, count: v,
                                                       u: random.uniform(.sample, step: d + 1, sequence: w, position: i + 1))
                        if logZ[i].isNaN {
                            probabilities.withUnsafeMutableBufferPointer { p in
                                p.baseAddress!.update(from: row, count: v)
                                logZ[i] = Double(RowOps.softmax(p.baseAddress!, count: v))
                                sumSquares[i] = p.reduce(0.0) { $0 + Double($1) * Double($1) }
                            }
                        }
                        let picked = Foundation.exp(Double(row[Int(token)]) - logZ[i])
                        let pNorm = max(0, sumSquares[i] - 2 * picked + 1).squareRoot()
                        jobs.append(Job(window: w, position: i, token: token, reading: r, pNorm: pNorm))
                    }
                }
            }
            first += count
        }
        // Each job: its window with x_{i+1} replaced, every position's loss against the truth.
        var done = 0
        while done < jobs.count {
            let count = min(b, jobs.count - done)
            var x = [Int32](repeating: 0, count: count * t), y = x
            for r in 0..<count {
                let job = jobs[done + r], start = job.window * (t + 1)
                for j in 0..<t {
                    x[r * t + j] = tokens[start + j]
                    y[r * t + j] = tokens[start + j + 1]
                }
                x[r * t + job.position + 1] = job.token
            }
            model.forward(tokens: x, targets: y, batch: count, seqLen: t, cache: cache)
            let losses = cache.positionLosses()
            for r in 0..<count {
                let job = jobs[done + r]
                for offset in 0...k where job.reading.offsets.contains(offset) && job.position + offset < t {
                    let p = job.position + offset
                    let change = abs(Double(losses[r * t + p]) - Double(baseline[job.window * t + p]))
                    upstream[job.window][offset] += job.reading.lossWeight * change
                    optimised[job.window][offset] += job.reading.policyWeight * change * job.pNorm
                }
            }
            done += count
        }
        // Means over every (draw, position) pair that has a loss at that offset: i ≤ T−2 and i + k ≤ T−1.
        for w in 0..<windows {
            for offset in 0...k {
                let pairs = Double(draws * min(t - 1, t - offset))
                upstream[w][offset] /= pairs
                optimised[w][offset] /= pairs
            }
        }
        return (upstream, optimised)
    }

    /// The weights' row: per batch of windows, ‖the game's gradient‖ under the true (vanilla) flow
    /// and under `flow`, with the game's own draws for that batch.
    static func weightRow(_ model: Transformer, tokens: [Int32], seqLen t: Int, game: TrainingGame, windows: Int,
                          trueFlow: GradientFlow, flow: GradientFlow, options: Options) -> (upstream: [Double], optimised: [Double]) {
        let b = min(options.batch, windows)
        let cache = model.makeCache(batch: b, seqLen: t)
        var runners: [Int: GameRunner] = [:]
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var upstream: [Double] = [], optimised: [Double] = []
        var first = 0
        while first < windows {
            let count = min(b, windows - first)
            TokenDataset.fillWindows(tokens, seqLen: t, first: first, count: count, inputs: &inputs, targets: &targets)
            let runner = runners[count] ?? GameRunner(game: game, model: model, cache: cache, batch: count, seqLen: t, seed: options.seed)
            runners[count] = runner
            for (pass, passFlow) in passFlows(trueFlow, flow).enumerated() {
                model.flow = passFlow
                inputs.withUnsafeBufferPointer { x in
                    targets.withUnsafeBufferPointer { y in
                        _ = runner.gradient(step: first / b + 1, inputs: x.baseAddress!, targets: y.baseAddress!)
                    }
                }
                let norm = GradientClipping.globalNorm(model.params)
                if pass == 0 { upstream.append(norm) }
                if pass == 1 || flow == trueFlow { optimised.append(norm) }
            }
            model.flow = flow
            first += count
        }
        return (upstream, optimised)
    }
}

extension Upstream {
    /// The table for a terminal: one line per row (activations by layer, their mean, outputs,
    /// weights), "upstream / optimised" at each offset up to `columns`; an exact 0 prints as "0".
    public static func format(_ table: UpstreamTable, columns: Int = 4) -> String {
        let shown = min(table.maxOffset + 1, columns), width = 16
        func number(_ x: Double) -> String { x == 0 ? "0" : String(format: "%.2g", x) }
        func cell(_ c: UpstreamCell?) -> String {
            guard let c else { return "" }
            let text = number(c.upstream) + " / " + number(c.optimised)
            return String(repeating: " ", count: max(1, width - text.count)) + text
        }
        var lines = ["row           " + (0..<shown).map { String(repeating: " ", count: width - "k=\($0)".count) + "k=\($0)" }.joined()
                     + (shown < table.maxOffset + 1 ? " …" : "")]
        var rows: [(String, String, Int?)] = (0...table.layers).map { ($0 == table.layers ? "resid final" : "resid \($0)", "activations", $0) }
        rows += [("resid mean", "activations", nil), ("outputs", "outputs", nil), ("weights", "weights", nil)]
        for (label, variable, layer) in rows {
            let count = variable == "weights" ? 1 : shown
            lines.append(label.padding(toLength: 14, withPad: " ", startingAt: 0)
                         + (0..<count).map { cell(table.cell(variable, layer: layer, offset: $0)) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
