import Foundation
import Myopia

/// The run folders under a directory and their key figures (`myopia runs`): training runs
/// (run_config.json + metrics.jsonl), gap studies (gap.json), games experiments (games.json; their
/// `game` lists the games, `val_loss` is teacher forcing's), demos (summary.json), and folders of
/// analysis results (`--out` of horizon, probe, lens, generate, eval), with one figure per result.
public enum Runs {
    public enum Kind: String, Codable, Sendable { case train, gap, games, demo, analysis }

    public struct Entry: Codable, Equatable, Sendable {
        public var path: String
        public var kind: Kind
        /// gpt2 / llama for a training run; nil when the folder does not say.
        public var family: String?
        /// The flow a training run trained with; the flows a gap compared.
        public var flow: String?
        /// The training game a training run trained under, when it is not teacher forcing
        /// (e.g. "scheduled-sampling (ρ = 0.25)").
        public var game: String?
        public var steps: Int?
        public var trainLoss: Double?
        public var valLoss: Double?
        /// A gap study's myopic − vanilla validation loss (mean over seeds) and its spread.
        public var gap: Double?
        public var gapStd: Double?
        public var seeds: Int?
        public var data: String?
        /// Last change to the folder's results (seconds since 1970).
        public var modified: Double
        /// The analysis results in the folder and one key figure of each, by file name
        /// ("probe.json": "k=1 gain over the current token +0.123 nats (layer 2)").
        public var results: [String: String]?

        enum CodingKeys: String, CodingKey {
            case path, kind, family, flow, game, steps, gap, seeds, data, modified, results
            case trainLoss = "train_loss", valLoss = "val_loss", gapStd = "gap_std"
        }
    }

    /// Every run folder at most `maxDepth` levels below `root` (root itself included), sorted by path.
    /// Folders that cannot be read as a run are skipped; a root that does not exist is an error.
    public static func list(_ root: URL, maxDepth: Int = 3) throws -> [Entry] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw InputError.io(file: root.path, reason: "no such folder")
        }
        var found: [Entry] = []
        func visit(_ dir: URL, depth: Int) {
            if let entry = read(dir, root: root) { found.append(entry) }
            guard depth < maxDepth,
                  let children = try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: [.isDirectoryKey])
            else { return }
            for child in children where (try? child.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true {
                // Checkpoint folders belong to their run.
                if child.lastPathComponent.hasPrefix("checkpoint-") || child.lastPathComponent.hasPrefix(".") { continue }
                visit(child, depth: depth + 1)
            }
        }
        visit(root, depth: 0)
        return found.sorted { $0.path < $1.path }
    }

    /// The entry of one folder, or nil when it holds no run: its run (if any) with the key figure of
    /// each analysis result beside it.
    public static func read(_ dir: URL, root: URL) -> Entry? {
        let results = figures(dir)
        guard var entry = run(dir, root: root) else {
            guard !results.isEmpty else { return nil }
            let record = (try? RunFolder.records(in: dir))?.values.sorted { $0.created < $1.created }.last
            return Entry(path: relativePath(dir, root: root), kind: .analysis, flow: nil, data: record?.data,
                         modified: results.keys.map { modifiedTime(dir.appendingPathComponent($0)) }.max() ?? 0, results: results)
        }
        if !results.isEmpty { entry.results = results }
        return entry
    }

    static func relativePath(_ dir: URL, root: URL) -> String {
        let relative = dir.standardizedFileURL.path.hasPrefix(root.standardizedFileURL.path)
            ? String(dir.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count)).trimmingCharacters(in: ["/"])
            : dir.path
        return relative.isEmpty ? "." : relative
    }

    static func modifiedTime(_ file: URL) -> Double {
        ((try? FileManager.default.attributesOfItem(atPath: file.path)[.modificationDate]) as? Date)?.timeIntervalSince1970 ?? 0
    }

    /// One key figure per analysis result in `dir` (files that do not decode are left out).
    public static func figures(_ dir: URL) -> [String: String] {
        var out: [String: String] = [:]
        func load<T: Decodable>(_ type: T.Type, _ name: String) -> T? { (try? RunFolder.load(type, name, in: dir)).flatMap { $0 } }
        if let t = load(HorizonTable.self, HorizonTable.fileName), let offset = t.meanOffset.first {
            out[HorizonTable.fileName] = String(format: "mean offset %.2f at layer 0 (%@)", offset, t.flow)
        }
        if let t = load(UpstreamTable.self, UpstreamTable.fileName) {
            let outputs = t.cells.filter { $0.variable == "outputs" }.map(\.optimised).max() ?? 0
            let later = t.cells.filter { $0.variable == "activations" && $0.layer == nil && $0.offset > 0 }.map(\.optimised).max() ?? 0
            out[UpstreamTable.fileName] = String(format: "%@/%@: activations optimised for k>0 up to %.3g, outputs %.3g",
                                                 t.game, t.flow, later, outputs)
        }
        if let t = load(ProbeTable.self, ProbeTable.fileName), !t.offsets.isEmpty {
            let k = t.offsets.firstIndex(of: 1) ?? t.offsets.indices.last!
            let gains = t.layers.indices.map { t.currentTokenLoss[k] - t.loss[$0][k] }
            if let best = gains.indices.max(by: { gains[$0] < gains[$1] }) {
                out[ProbeTable.fileName] = String(format: "k=%d gain over the current token %+.3f nats (layer %d)", t.offsets[k], gains[best], t.layers[best])
            }
        }
        if let t = load(SineProbeTable.self, SineProbeTable.fileName), let lag0 = t.lags.firstIndex(of: 0) {
            let rows = t.layers.indices.filter { t.layers[$0] > 0 }
            if let best = rows.max(by: { t.r2[$0][lag0] < t.r2[$1][lag0] }) {
                out[SineProbeTable.fileName] = String(format: "R² of sin(f·x_n) %.3f (layer %d)", t.r2[best][lag0], t.layers[best])
            }
        }
        if let t = load(LensTable.self, LensTable.fileName), let last = t.layers.indices.last, let k0 = t.offsets.firstIndex(of: 0) {
            out[LensTable.fileName] = String(format: "layer %d at k=0: %.3f nats", t.layers[last], t.loss[last][k0])
        }
        if let g = load(GenerationStudy.Report.self, GenerationStudy.fileName) {
            let m = g.metrics
            out[GenerationStudy.fileName] = "\(m.loop_count)/\(m.samples) in a loop, distinct-4 " + (m.distinct.last?.pooled.map { String(format: "%.3f", $0) } ?? "–")
        }
        if let r = load(SelfReinforcement.Report.self, SelfReinforcement.fileName), let a = r.points.first, let b = r.points.last {
            out[SelfReinforcement.fileName] = String(format: "TP %.3f → %.3f, IP %.2f → %.2f (n = %d → %d)", a.tp, b.tp, a.ip, b.ip, a.n, b.n)
        }
        if let e = load(EvaluationResult.self, EvaluationResult.fileName) {
            out[EvaluationResult.fileName] = String(format: "loss %.4f over %d tokens", e.loss, e.tokens)
        }
        return out
    }

    /// The training run, gap study, games experiment or demo in `dir`, or nil.
    static func run(_ dir: URL, root: URL) -> Entry? {
        let path = relativePath(dir, root: root)
        let modified = modifiedTime
        let decoder = RunFolder.decoder

        let gapFile = dir.appendingPathComponent(Gap.summaryFile)
        if let data = try? Data(contentsOf: gapFile), let s = try? decoder.decode(Gap.Summary.self, from: data) {
            return Entry(path: path, kind: .gap, family: s.settings.family.rawValue, flow: s.flows.map(\.flow).joined(separator: ","),
                         steps: s.settings.steps, valLoss: s.flow("vanilla")?.valLoss.mean, gap: s.gap?.valLoss.mean,
                         gapStd: s.gap?.valLoss.std, seeds: s.seeds.count, data: s.data, modified: modified(gapFile))
        }
        let gamesFile = dir.appendingPathComponent(GamesExperiment.summaryFile)
        if let data = try? Data(contentsOf: gamesFile), let s = try? decoder.decode(GamesExperiment.Summary.self, from: data) {
            return Entry(path: path, kind: .games, family: s.settings.family.rawValue, flow: s.settings.flow.description,
                         game: s.games.map(\.label).joined(separator: ","),
                         steps: s.settings.steps, valLoss: (s.game("teacher-forced") ?? s.games.first)?.valLoss.mean,
                         seeds: s.seeds.count, data: s.data, modified: modified(gamesFile))
        }
        let metricsFile = dir.appendingPathComponent(Trainer.metricsFile)
        let configFile = dir.appendingPathComponent(Trainer.runConfigFile)
        if let data = try? Data(contentsOf: configFile), let config = try? decoder.decode(TrainConfig.self, from: data) {
            var entry = Entry(path: path, kind: .train, family: config.family.rawValue, flow: config.flow.description,
                              data: config.data, modified: modified(configFile))
            if config.game != .teacherForced { entry.game = config.game.description }
            if FileManager.default.fileExists(atPath: metricsFile.path) {
                let metrics = Report.metrics(dir)
                entry.steps = metrics.last?.step
                entry.trainLoss = metrics.last?.trainLoss
                entry.valLoss = metrics.last(where: { $0.valLoss != nil })?.valLoss
                entry.modified = max(entry.modified, modified(metricsFile))
            }
            let eval = dir.appendingPathComponent(EvaluationResult.fileName)
            if let data = try? Data(contentsOf: eval), let result = try? decoder.decode(EvaluationResult.self, from: data) {
                entry.valLoss = result.loss   // the final score over the whole validation split
            }
            return entry
        }
        let demoFile = dir.appendingPathComponent("summary.json")
        if let data = try? Data(contentsOf: demoFile), let s = try? decoder.decode(Demo.Summary.self, from: data) {
            return Entry(path: path, kind: .demo, steps: s.steps, valLoss: s.valLoss, data: s.data, modified: modified(demoFile))
        }
        return nil
    }

    /// A plain-text table of `entries`.
    public static func format(_ entries: [Entry]) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "–" }
        let rows = entries.map { e -> [String] in
            let gap = e.gap.map { g in String(format: "%+.4f", g) + (e.gapStd.map { String(format: " ± %.4f", $0) } ?? "") } ?? ""
            let results = (e.results ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key.replacingOccurrences(of: ".json", with: "")): \($0.value)" }.joined(separator: "; ")
            let flow = (e.flow ?? "") + (e.game.map { ", " + $0 } ?? "")
            return [e.path, e.kind.rawValue, e.family ?? "", flow, e.steps.map(String.init) ?? "",
                    f(e.trainLoss), f(e.valLoss), gap, results]
        }
        let header = ["run", "kind", "family", "flow, game", "steps", "train loss", "val loss", "gap (myopic − vanilla)", "results"]
        let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}
