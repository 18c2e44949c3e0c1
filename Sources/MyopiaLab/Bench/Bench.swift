import Foundation
import Myopia
import MyopiaKernels

/// `myopia bench`: GEMM throughput on transformer shapes (beside OpenBLAS when it is installed),
/// the training step of the SMALL reference configuration against a measured FMA peak, the cost of
/// the exact horizon, and tokenizer encode/decode throughput.
public enum Bench {
    public struct GEMMCase: Encodable, Sendable {
        public var m: Int, k: Int, n: Int
        public var layout: String          // "NN" (A·B), "NT" (A·Bᵀ), "TN" (Aᵀ·B)
        public var threads: Int
        public var gflops: Double
        public var openblasGflops: Double?
        public var ratio: Double? { openblasGflops.map { gflops / $0 } }

        enum CodingKeys: String, CodingKey { case m, k, n, layout, threads, gflops, openblasGflops = "openblas_gflops", ratio }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(m, forKey: .m); try c.encode(k, forKey: .k); try c.encode(n, forKey: .n)
            try c.encode(layout, forKey: .layout); try c.encode(threads, forKey: .threads)
            try c.encode(gflops, forKey: .gflops)
            try c.encodeIfPresent(openblasGflops, forKey: .openblasGflops)
            try c.encodeIfPresent(ratio, forKey: .ratio)
        }
    }

    public struct TrainStep: Codable, Sendable {
        public var name: String
        public var config: String
        public var flow: String
        public var threads: Int
        public var gflopPerStep: Double
        public var msPerStep: Double          // median
        public var tokensPerSecond: Double
        public var gflops: Double
        /// Model FLOP utilisation against the measured FMA peak at this thread count.
        public var mfu: Double
        /// Medians of the step's phases: forward (with the loss), backward, and the optimiser
        /// (clipping + AdamW), with zeroing the gradients counted in the optimiser.
        public var forwardMs: Double
        public var backwardMs: Double
        public var optimizerMs: Double
        /// Peak resident set of the process while this configuration was built and stepped (VmHWM
        /// from /proc/self/status after resetting it through /proc/self/clear_refs just before the
        /// model was built), MiB; nil where /proc cannot tell. Includes the process's own baseline
        /// (`baselineRSSMiB`, VmRSS before the model was built).
        public var peakRSSMiB: Double?
        public var baselineRSSMiB: Double?
        /// Heap allocations per timed step (the mean; any thread), which should be 0; nil where the
        /// bench was given no `AllocationCounter`.
        public var allocationsPerStep: Double?

        enum CodingKeys: String, CodingKey {
            case name, config, flow, threads, gflops, mfu
            case gflopPerStep = "gflop_per_step", msPerStep = "ms_per_step", tokensPerSecond = "tokens_per_s"
            case forwardMs = "forward_ms", backwardMs = "backward_ms", optimizerMs = "optimizer_ms"
            case peakRSSMiB = "peak_rss_mib", baselineRSSMiB = "baseline_rss_mib"
            case allocationsPerStep = "allocations_per_step"
        }

        /// `allocationsPerStep` for a log line: "0", "160", "0.4", or "n/a".
        public var allocationsText: String {
            guard let a = allocationsPerStep else { return "n/a" }
            return a == a.rounded() ? String(Int(a)) : String(format: "%.1f", a)
        }
    }

    /// A training configuration `myopia bench` steps: a GPT-2-family model built in memory.
    public struct TrainingConfig: Sendable {
        public var name: String
        public var model: ModelConfig
        public var batch: Int
        public var seqLen: Int
        public var summary: String {
            "vocab \(model.vocabSize), seq \(seqLen), \(model.nLayers) layers, \(model.nHeads) heads, "
                + "d_model \(model.dModel), batch \(batch)"
        }
    }

    /// SMALL: vocab 8192, seq 256, 4 layers, 4 heads, d_model 256, batch 8 (70.9 GFLOP/step).
    public static let smallConfig = TrainingConfig(
        name: "SMALL",
        model: ModelConfig(vocabSize: 8192, maxPositions: 256, dModel: 256, nLayers: 4, nHeads: 4, tokenizer: nil),
        batch: 8, seqLen: 256)

    /// GPT-2 124M (vocab 50257, n_ctx 1024, 12 layers, 12 heads, d_model 768) at batch 4, seq 64,
    /// the setting of Wu et al. (191.6 GFLOP/step).
    public static let gpt2Config = TrainingConfig(
        name: "GPT2-124M",
        model: ModelConfig(vocabSize: 50257, maxPositions: 1024, dModel: 768, nLayers: 12, nHeads: 12, tokenizer: nil),
        batch: 4, seqLen: 64)

    /// The configurations `--models` names (lower-cased).
    public static let trainingConfigs: [String: TrainingConfig] = ["small": smallConfig, "gpt2-124m": gpt2Config]

    /// One training game's step (TrainingGame) on a configuration, and its cost over teacher forcing
    /// measured in the same run.
    public struct GameStep: Codable, Sendable {
        public var game: String
        public var config: String
        public var threads: Int
        public var msPerStep: Double          // median
        public var forwardMs: Double
        public var backwardMs: Double
        public var optimizerMs: Double
        /// This game's step time / the teacher-forced step time.
        public var overTeacherForced: Double
        public var allocationsPerStep: Double?

        enum CodingKeys: String, CodingKey {
            case game, config, threads
            case msPerStep = "ms_per_step", forwardMs = "forward_ms", backwardMs = "backward_ms", optimizerMs = "optimizer_ms"
            case overTeacherForced = "over_teacher_forced", allocationsPerStep = "allocations_per_step"
        }
    }

    /// The games `run` times: each at the knobs `myopia games` uses by default.
    public static let benchGames: [TrainingGame] = [
        .teacherForced, .scheduledSampling(rate: 0.25),
        .consequence(ConsequenceSettings(weight: 0.5, horizon: 4, positions: 4, estimator: .sampled)), .multiToken(heads: 2),
    ]

    /// What the exact horizon costs next to one ordinary backward pass and to the brute-force loop
    /// of single-target backward passes it replaces.
    public struct HorizonCost: Codable, Sendable {
        public var config: String
        public var backwardMs: Double
        /// max offset K -> milliseconds, and the same in backward passes (target: ≤ K + 2).
        public var horizonMs: [String: Double]
        public var horizonInBackwardPasses: [String: Double]
        /// T single-target backward passes (measured), the alternative.
        public var bruteForceMs: Double

        enum CodingKeys: String, CodingKey {
            case config
            case backwardMs = "backward_ms", horizonMs = "horizon_ms", horizonInBackwardPasses = "horizon_in_backward_passes"
            case bruteForceMs = "brute_force_ms"
        }
    }

    /// Encode and decode speed of one tokenizer on a corpus (one thread; best of three runs).
    public struct TokenizerThroughput: Codable, Sendable {
        public var tokenizer: String
        public var corpus: String
        public var bytes: Int
        public var tokens: Int
        /// Megabytes (10⁶ bytes) of UTF-8 text per second: text -> ids.
        public var encodeMBPerSecond: Double
        /// Megabytes of text produced per second: ids -> String.
        public var decodeMBPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case tokenizer, corpus, bytes, tokens
            case encodeMBPerSecond = "encode_mb_per_s", decodeMBPerSecond = "decode_mb_per_s"
        }
    }

    /// Cached decoding speed of a real model: one token at a time after a short prompt.
    public struct DecodeSpeed: Codable, Sendable {
        public var model: String
        public var parameters: Int
        public var threads: Int
        public var promptTokens: Int
        public var tokens: Int
        public var tokensPerSecond: Double
        /// fp32 weights streamed per second (every weight is read once per token).
        public var weightGBPerSecond: Double
        /// Prompt processing: a 256-token prompt in chunks of 64 rows, tokens per second.
        public var promptTokensPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case model, parameters, threads, tokens
            case promptTokens = "prompt_tokens", tokensPerSecond = "tokens_per_s", weightGBPerSecond = "weight_gb_per_s"
            case promptTokensPerSecond = "prompt_tokens_per_s"
        }
    }

    /// Sampling N continuations of one prompt together (`Generation.sample(requests:decodeBatch:)`,
    /// all N in one decode batch), from fp32 or quantised weights.
    public struct GenerateSpeed: Codable, Sendable {
        public var model: String
        /// "fp32" or "quantized" (the GGUF's blocks, `GGUFModel.quantizedWeights`).
        public var weights: String
        /// Bytes of weights one decode step streams (the projections and the head).
        public var weightBytesPerStep: Int
        public var samples: Int
        public var threads: Int
        public var promptTokens: Int
        /// New tokens per sample (no stop token).
        public var tokens: Int
        /// samples · tokens / seconds, the prompt's one prefill included (median of three runs).
        public var tokensPerSecond: Double

        enum CodingKeys: String, CodingKey {
            case model, weights, samples, threads, tokens
            case weightBytesPerStep = "weight_bytes_per_step", promptTokens = "prompt_tokens", tokensPerSecond = "tokens_per_s"
        }
    }

    public struct Report: Encodable, Sendable {
        public var kernel: String
        /// How the kernel was chosen, with the single-thread timings behind the choice.
        public var kernelSelection: GEMM.KernelSelection
        public var cores: Int
        public var fmaPeakGflops: [String: Double]     // threads -> GFLOP/s, the widest vectors' or best
        /// "ymm" / "zmm" -> threads -> GFLOP/s: the FMA peak of each vector width this CPU has.
        public var fmaPeakGflopsByWidth: [String: [String: Double]]
        public var gemm: [GEMMCase]
        public var gemmGeomeanRatio: [String: Double]  // threads -> geometric mean of Myopia/OpenBLAS
        public var training: [TrainStep]
        /// "CONFIG/threads" -> myopic step time / vanilla step time (target ≤ 1.03)
        public var myopicOverVanilla: [String: Double]
        public var horizon: HorizonCost?
        public var tokenizers: [TokenizerThroughput]
        public var decode: [DecodeSpeed]
        /// threads -> GB/s read from memory (`Peak.measureReadBandwidth`): the ceiling of decoding
        /// one token at a time, which streams every weight once (measured with the decode figures).
        public var memoryReadGBs: [String: Double]
        /// Sampled generation of `decodeModel` at N = 1, 4, 16, 64 samples (fp32) and N = 1, 16
        /// (quantised), at the largest thread count.
        public var generate: [GenerateSpeed]
        /// Each training game's step against the teacher-forced one (`gamesConfig`, vanilla flow).
        public var games: [GameStep]

        enum CodingKeys: String, CodingKey {
            case kernel, cores, gemm, training, horizon, tokenizers, decode, generate, games
            case kernelSelection = "kernel_selection", fmaPeakGflopsByWidth = "fma_peak_gflops_by_width"
            case fmaPeakGflops = "fma_peak_gflops", gemmGeomeanRatio = "gemm_geomean_ratio_vs_openblas"
            case myopicOverVanilla = "myopic_over_vanilla", memoryReadGBs = "memory_read_gbs"
        }
    }

    /// The shapes (M, K, N) of the core-engine issue: transformer projections at B·T = 2048 rows.
    public static let gemmShapes: [(Int, Int, Int)] = [
        (2048, 256, 768), (2048, 768, 256), (2048, 256, 1024), (2048, 1024, 256), (2048, 256, 8192), (256, 2048, 768),
    ]

    /// Rounds of the GEMM comparison with OpenBLAS (see `run`).
    public static let gemmRounds = 5

    /// The tokenizers `run` measures, each skipped (with a log line) when its files cannot be had.
    public static let benchTokenizers = ["gpt2", "smollm2-135m"]

    public static func run(threads: [Int], gemm: Bool = true, training: Bool = true,
                           models: [TrainingConfig] = [smallConfig, gpt2Config], games: Bool = true, horizon: Bool = true,
                           tokenizers: Bool = true, decode: Bool = true, generateSamples: [Int] = generateSampleCounts,
                           store: AssetStore = AssetStore(),
                           trainSteps: Int = 5, allocationCounter: AllocationCounter? = nil,
                           log: (String) -> Void = { _ in }) throws -> Report {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        var peaks: [String: Double] = [:]
        var peaksByWidth: [String: [String: Double]] = [:]
        for t in threads where gemm || training {   // the peak is what GEMM and training are measured against
            for (name, floats) in Peak.widths {
                let peak = Peak.measureFMAPeak(threads: t, width: floats)
                peaksByWidth[name, default: [:]]["\(t)"] = peak
                log(String(format: "FMA peak, %@, %d thread(s): %.1f GFLOP/s", name, t, peak))
            }
            // MFU is quoted against the best width (the portable loop where the CPU has no FMA).
            peaks["\(t)"] = peaksByWidth.values.compactMap { $0["\(t)"] }.max() ?? Peak.measureFMAPeak(threads: t)
        }
        var cases: [GEMMCase] = []
        var geomean: [String: Double] = [:]
        if gemm {
            let blas = OpenBLAS.load()
            if blas == nil { log("OpenBLAS not found (apt-get install libopenblas-dev to compare); Myopia figures only") }
            for t in threads {
                Parallel.threadCount = t
                blas?.setThreads(t)
                var logSum = 0.0, counted = 0
                for (m, k, n) in gemmShapes {
                    for layout in ["NN", "NT", "TN"] {
                        var c = GEMMCase(m: m, k: k, n: n, layout: layout, threads: t, gflops: 0, openblasGflops: nil)
                        let ours = GEMMContender(pause: 0) { a, lda, ta, b, ldb, tb, out, ldc in
                            GEMM.multiply(m: m, n: n, k: k, a: a, lda: lda, transA: ta, b: b, ldb: ldb, transB: tb,
                                          c: out, ldc: ldc, accumulate: false)
                        }
                        guard let blas else {
                            c.gflops = measureGEMM(m: m, k: k, n: n, layout: layout, rounds: 1, [ours])[0]
                            cases.append(c)
                            log(String(format: "GEMM %4d×%4d×%4d %@ %dT: %6.1f GFLOP/s", m, k, n, layout, t, c.gflops))
                            continue
                        }
                        // OpenBLAS's idle workers busy-wait for a while after each call; they are let
                        // sleep before the next measurement, or it would run beside a spinning core.
                        let openblas = GEMMContender(pause: t > 1 ? 0.3 : 0) { a, lda, ta, b, ldb, tb, out, ldc in
                            blas.multiply(m: m, n: n, k: k, a: a, lda: lda, transA: ta, b: b, ldb: ldb, transB: tb,
                                          c: out, ldc: ldc, accumulate: false)
                        }
                        let best = measureGEMM(m: m, k: k, n: n, layout: layout, rounds: gemmRounds, [ours, openblas])
                        c.gflops = best[0]
                        c.openblasGflops = best[1]
                        if let r = c.ratio { logSum += Foundation.log(r); counted += 1 }
                        log(String(format: "GEMM %4d×%4d×%4d %@ %dT: %6.1f GFLOP/s  (OpenBLAS %.1f, ratio %.2f)",
                                   m, k, n, layout, t, c.gflops, best[1], c.gflops / best[1]))
                        cases.append(c)
                    }
                }
                if counted > 0 { geomean["\(t)"] = Foundation.exp(logSum / Double(counted)) }
            }
        }
        var steps: [TrainStep] = []
        var ratios: [String: Double] = [:]
        if training {
            for config in models {
                for t in threads {
                    Parallel.threadCount = t
                    var byFlow: [String: Double] = [:]
                    // Two passes per flow in the order vanilla, myopic, myopic, vanilla: a later pass
                    // reads a few percent slower than an earlier one on this machine (measured with
                    // either flow first), and the mirrored order gives both flows the same share of it.
                    var samples: [String: [StepSamples]] = [:]
                    for flow in [GradientFlow.vanilla, .myopic, .myopic, .vanilla] {
                        samples[flow.description, default: []].append(
                            try sampleTrainingSteps(config, steps: trainSteps, flow: flow, allocationCounter: allocationCounter))
                    }
                    for flow in [GradientFlow.vanilla, .myopic] {
                        var step = summarize(samples[flow.description]!, config, flow: flow)
                        step.mfu = step.gflops / (peaks["\(t)"] ?? .nan)
                        log(String(format: "train step %@ %@ %dT: %.1f ms/step (forward %.1f, backward %.1f, optimiser %.1f), "
                                   + "%.0f tokens/s, %.1f GFLOP/s, MFU %.2f, peak RSS %@, allocations/step %@",
                                   config.name, flow.description, t, step.msPerStep, step.forwardMs, step.backwardMs,
                                   step.optimizerMs, step.tokensPerSecond, step.gflops, step.mfu,
                                   step.peakRSSMiB.map { String(format: "%.0f MiB", $0) } ?? "n/a", step.allocationsText))
                        steps.append(step)
                        byFlow[flow.description] = step.msPerStep
                    }
                    let key = "\(config.name)/\(t)"
                    ratios[key] = byFlow["myopic"]! / byFlow["vanilla"]!
                    log(String(format: "myopic / vanilla step time, %@ %dT: %.3f", config.name, t, ratios[key]!))
                }
            }
        }
        var gameSteps: [GameStep] = []
        if games {
            for t in threads {
                Parallel.threadCount = t
                gameSteps += try measureGames(smallConfig, steps: trainSteps, allocationCounter: allocationCounter, log: log)
            }
        }
        var horizonCost: HorizonCost?
        if horizon {
            Parallel.threadCount = threads.max() ?? 1
            horizonCost = measureHorizon(log: log)
        }
        let tokenizerCases = tokenizers ? measureTokenizers(store: store, log: log) : []
        var decodeCases: [DecodeSpeed] = [], generateCases: [GenerateSpeed] = []
        var memoryRead: [String: Double] = [:]
        if decode {
            for t in threads {
                let rate = Peak.measureReadBandwidth(threads: t)
                memoryRead["\(t)"] = rate
                log(String(format: "memory read, %d thread(s): %.1f GB/s", t, rate))
                Parallel.threadCount = t
                if let d = measureDecode(store: store, log: log) { decodeCases.append(d) }
            }
            Parallel.threadCount = threads.max() ?? 1
            generateCases = measureGenerate(store: store, samples: generateSamples, log: log)
        }
        return Report(kernel: GEMM.kernelName, kernelSelection: GEMM.selection,
                      cores: ProcessInfo.processInfo.activeProcessorCount,
                      fmaPeakGflops: peaks, fmaPeakGflopsByWidth: peaksByWidth, gemm: cases, gemmGeomeanRatio: geomean, training: steps,
                      myopicOverVanilla: ratios, horizon: horizonCost, tokenizers: tokenizerCases, decode: decodeCases,
                      memoryReadGBs: memoryRead, generate: generateCases, games: gameSteps)
    }

    /// Every game of `benchGames` on `bench` (vanilla flow) at the current thread count, in the
    /// mirrored order A B C D D C B A so that each game gets the same share of the machine's drift.
    static func measureGames(_ bench: TrainingConfig, steps: Int, allocationCounter: AllocationCounter?,
                             log: (String) -> Void) throws -> [GameStep] {
        var samples: [String: [StepSamples]] = [:]
        for game in benchGames + benchGames.reversed() {
            samples[game.description, default: []].append(
                try sampleTrainingSteps(bench, steps: steps, flow: .vanilla, game: game, allocationCounter: allocationCounter))
        }
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        let teacher = median(samples[TrainingGame.teacherForced.description]!.flatMap(\.total))
        return benchGames.map { game in
            let passes = samples[game.description]!
            let ms = median(passes.flatMap(\.total))
            let step = GameStep(game: game.description, config: bench.name, threads: Parallel.threadCount, msPerStep: ms,
                                forwardMs: median(passes.flatMap(\.forward)), backwardMs: median(passes.flatMap(\.backward)),
                                optimizerMs: median(passes.flatMap(\.update)), overTeacherForced: ms / teacher,
                                allocationsPerStep: passes.compactMap(\.allocationsPerStep).max())
            log(String(format: "game step %@ %@ %dT: %.1f ms/step (forward %.1f, backward %.1f, optimiser %.1f), %.2f× teacher-forced, allocations/step %@",
                       bench.name, game.description, step.threads, ms, step.forwardMs, step.backwardMs, step.optimizerMs,
                       step.overTeacherForced, step.allocationsPerStep.map { String(format: "%.0f", $0) } ?? "n/a"))
            return step
        }
    }

    /// The model `measureDecode` times (skipped, with a log line, when it cannot be fetched).
    public static let decodeModel = "smollm2-135m"

    /// Greedy cached decoding of `decodeModel`: a 5-token prompt, then `tokens` tokens one at a
    /// time (the median of three runs), on the current thread count.
    public static func measureDecode(store: AssetStore, tokens: Int = 64, log: (String) -> Void) -> DecodeSpeed? {
        let model: Transformer
        do { model = try ModelSource.load(decodeModel, store: store, log: log).model } catch {
            log("decode speed skipped: \(decodeModel) unavailable (\(error))")
            return nil
        }
        let prompt: [Int32] = [504, 3575, 282, 4649, 314]
        let cache = KVCache(config: model.config, capacity: prompt.count + tokens + 1)
        let runs = (0..<3).map { _ -> Double in
            cache.reset()
            var logits = model.decode(prompt, cache: cache)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<tokens {
                var next = 0
                for j in 1..<model.config.vocabSize where logits[j] > logits[next] { next = j }
                logits = model.decode([Int32(next)], cache: cache)
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }.sorted()
        let seconds = runs[1]
        // Prompt processing: 256 tokens of text-like ids, 64 rows per chunk.
        let long = (0..<256).map { Int32(($0 * 7919 + 13) % 40_000 + 100) }
        let prefillCache = KVCache(config: model.config, capacity: long.count)
        let prefill = (0..<3).map { _ -> Double in
            prefillCache.reset()
            let start = DispatchTime.now().uptimeNanoseconds
            model.decode(long, cache: prefillCache)
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }.sorted()[1]
        let d = DecodeSpeed(model: decodeModel, parameters: model.params.count, threads: Parallel.threadCount,
                            promptTokens: prompt.count, tokens: tokens, tokensPerSecond: Double(tokens) / seconds,
                            weightGBPerSecond: Double(model.params.count * 4 * tokens) / seconds / 1e9,
                            promptTokensPerSecond: Double(long.count) / prefill)
        log(String(format: "decode %@, %d thread(s): %.1f tokens/s (%.1f GB/s of fp32 weights); prompt %.0f tokens/s",
                   decodeModel, d.threads, d.tokensPerSecond, d.weightGBPerSecond, d.promptTokensPerSecond))
        return d
    }

    /// The sample counts `measureGenerate` measures by default.
    public static let generateSampleCounts = [1, 4, 16, 64]

    /// The prompt `measureGenerate` continues: "The capital of France is" in SmolLM2's tokenizer.
    public static let generatePrompt: [Int32] = [504, 3575, 282, 4649, 314]

    /// `decodeModel` sampling `tokens` new tokens (temperature 1, seed 1 + i for sample i, no stop
    /// token) after `generatePrompt`, N samples decoding together: fp32 at N = 1, 4, 16, 64, and
    /// from the GGUF's quantised blocks at N = 1 and 16. Median of three runs each.
    public static func measureGenerate(store: AssetStore, tokens: Int = 64, samples: [Int] = generateSampleCounts,
                                       log: (String) -> Void) -> [GenerateSpeed] {
        let loaded: (location: ModelSource.Location, model: Transformer)
        do { loaded = try ModelSource.load(decodeModel, store: store, log: log) } catch {
            log("generation speed skipped: \(decodeModel) unavailable (\(error))")
            return []
        }
        let model = loaded.model
        var quantized: QuantizedWeights?
        if case .gguf(let url, _) = loaded.location {
            quantized = try? GGUFModel.quantizedWeights(try GGUFFile(contentsOf: url), for: model)
        }
        // The projections and the head: what a decode step reads (the embedding row lookup aside).
        let projections = model.params.entries.filter { $0.name.hasSuffix("_proj.weight") }.reduce(0) { $0 + $1.count }
        let floatBytes = 4 * (projections + model.config.vocabSize * model.config.dModel)
        var cases: [GenerateSpeed] = []
        for (weights, counts) in [("fp32", samples), ("quantized", samples.filter { [1, 16].contains($0) })] {
            if weights == "quantized" { guard let quantized, !quantized.matrices.isEmpty else { continue } }
            model.quantizedDecoding = weights == "quantized" ? quantized : nil
            let bytes = weights == "quantized"
                ? floatBytes - 4 * quantized!.matrices.values.reduce(0) { $0 + $1.rows * $1.columns } + quantized!.byteCount
                : floatBytes
            for n in counts {
                let requests = (0..<n).map {
                    SampleRequest(prompt: generatePrompt, options: SamplingOptions(temperature: 1, seed: 1 + UInt64($0), maxTokens: tokens))
                }
                let seconds = (0..<3).map { _ -> Double in
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = Generation.sample(model, requests: requests, decodeBatch: n)
                    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }.sorted()[1]
                let g = GenerateSpeed(model: decodeModel, weights: weights, weightBytesPerStep: bytes, samples: n,
                                      threads: Parallel.threadCount, promptTokens: generatePrompt.count, tokens: tokens,
                                      tokensPerSecond: Double(n * tokens) / seconds)
                log(String(format: "generate %@ (%@ weights, %.0f MB a step), %d sample(s) together, %d thread(s): %.1f tokens/s",
                           decodeModel, weights, Double(bytes) / 1e6, n, g.threads, g.tokensPerSecond))
                cases.append(g)
            }
        }
        model.quantizedDecoding = nil
        return cases
    }

    /// Encode and decode throughput of `benchTokenizers` on tiny-shakespeare repeated to 4 MB or more
    /// (text -> ids with `encode`, ids -> String with `decode`), best of three runs each.
    public static func measureTokenizers(store: AssetStore, names: [String] = benchTokenizers, minimumBytes: Int = 4_000_000,
                                         log: (String) -> Void) -> [TokenizerThroughput] {
        let corpus: String
        do { corpus = try String(contentsOf: store.fetch("tinyshakespeare", log: log), encoding: .utf8) } catch {
            log("tokenizer throughput skipped: tiny-shakespeare unavailable (\(error))")
            return []
        }
        let copies = max(1, (minimumBytes + corpus.utf8.count - 1) / corpus.utf8.count)
        let text = String(repeating: corpus, count: copies)
        let bytes = text.utf8.count
        func best(_ body: () -> Void) -> Double {
            (0..<3).map { _ in
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }.min()!
        }
        var out: [TokenizerThroughput] = []
        for name in names {
            let tokenizer: any Tokenizer
            do { tokenizer = try Tokenizers.load(name, store: store, log: log) } catch {
                log("tokenizer \(name) skipped: \(error)")
                continue
            }
            var ids: [Int32] = []
            let encode = best { ids = tokenizer.encode(text) }
            var decoded = 0
            let decode = best { decoded = tokenizer.decode(ids).utf8.count }
            let t = TokenizerThroughput(tokenizer: name, corpus: "tinyshakespeare x\(copies)", bytes: bytes, tokens: ids.count,
                                        encodeMBPerSecond: Double(bytes) / 1e6 / encode,
                                        decodeMBPerSecond: Double(decoded) / 1e6 / decode)
            log(String(format: "tokenizer %@ on %@ (%.2f MB, %d tokens): encode %.1f MB/s, decode %.1f MB/s",
                       name, t.corpus, Double(bytes) / 1e6, t.tokens, t.encodeMBPerSecond, t.decodeMBPerSecond))
            out.append(t)
        }
        return out
    }

    /// The horizon on a small model (4 layers, d_model 128, 4 heads, T 64, 4 sequences): one
    /// backward pass, the channel backward at several max offsets, and the brute-force loop.
    static func measureHorizon(log: (String) -> Void) -> HorizonCost {
        let (b, t) = (4, 64)
        let config = ModelConfig(vocabSize: 256, maxPositions: t, dModel: 128, nLayers: 4, nHeads: 4)
        let model = Transformer(config: config)
        model.initialize(seed: 3)
        var rng = SeededGenerator(seed: 4)
        let tokens = (0..<(b * t)).map { _ in Int32(rng.nextInt(below: 256)) }
        let targets = (0..<(b * t)).map { _ in Int32(rng.nextInt(below: 256)) }
        let cache = model.makeCache(batch: b, seqLen: t)
        func median(_ runs: Int, _ body: () -> Void) -> Double {
            var times: [Double] = []
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            return times.sorted()[runs / 2]
        }
        // Backward alone: forward once per run outside the timer (backward overwrites the logits).
        var backwardTimes: [Double] = []
        for _ in 0..<5 {
            model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
            let start = DispatchTime.now().uptimeNanoseconds
            model.backward(cache: cache)
            backwardTimes.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        let backward = backwardTimes.sorted()[2]
        model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
        var horizonMs: [String: Double] = [:], inPasses: [String: Double] = [:]
        for k in [0, 4, 16, t - 1] {
            let ms = median(3) { model.horizonBackward(cache: cache, maxOffset: k) { _ in } }
            horizonMs["\(k)"] = ms
            inPasses["\(k)"] = ms / backward
            log(String(format: "horizon K=%d: %.1f ms = %.2f backward passes (target ≤ %d)", k, ms, ms / backward, k + 2))
        }
        // The brute-force alternative: one ordinary backward per target position.
        let brute = median(1) {
            var masked = [Int32](repeating: -1, count: b * t)
            for target in 0..<t {
                for i in 0..<(b * t) { masked[i] = i % t == target ? targets[i] : -1 }
                model.forward(tokens: tokens, targets: masked, batch: b, seqLen: t, cache: cache)
                model.backward(cache: cache)
            }
        }
        log(String(format: "horizon by brute force (%d single-target backward passes, with their forwards): %.0f ms", t, brute))
        return HorizonCost(config: "vocab 256, 4 layers, d_model 128, 4 heads, T 64, 4 sequences", backwardMs: backward,
                           horizonMs: horizonMs, horizonInBackwardPasses: inPasses, bruteForceMs: brute)
    }

    typealias GEMMCall = (UnsafePointer<Float>, Int, Bool, UnsafePointer<Float>, Int, Bool, UnsafeMutablePointer<Float>, Int) -> Void

    /// A GEMM implementation `measureGEMM` times, and the seconds to wait after timing it.
    struct GEMMContender {
        let pause: Double
        let call: GEMMCall
        init(pause: Double, _ call: @escaping GEMMCall) { self.pause = pause; self.call = call }
    }

    /// Best-of-repeats GFLOP/s of each contender for C (M×N) = op(A)·op(B) in the given layout, on
    /// the same operands. Over `rounds` rounds the contenders take turns going first and each keeps
    /// its best round: a moment of interference from elsewhere on the machine costs a round, not the
    /// comparison.
    static func measureGEMM(m: Int, k: Int, n: Int, layout: String, rounds: Int, _ contenders: [GEMMContender]) -> [Double] {
        let transA = layout.hasPrefix("T"), transB = layout.hasSuffix("T")
        let a = randomBuffer(m * k, seed: 1), b = randomBuffer(k * n, seed: 2)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        let lda = transA ? m : k, ldb = transB ? k : n
        let flop = 2.0 * Double(m) * Double(n) * Double(k)
        let reps = max(3, Int(2e9 / flop))
        var best = [Double](repeating: .infinity, count: contenders.count)
        for round in 0..<rounds {
            for turn in 0..<contenders.count {
                let index = (turn + round) % contenders.count
                let contender = contenders[index]
                contender.call(a, lda, transA, b, ldb, transB, c, n)   // warm-up: packing buffers, caches, threads
                for _ in 0..<reps {
                    let start = DispatchTime.now().uptimeNanoseconds
                    contender.call(a, lda, transA, b, ldb, transB, c, n)
                    best[index] = min(best[index], Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                }
                if contender.pause > 0 { Thread.sleep(forTimeInterval: contender.pause) }
            }
        }
        return best.map { flop / $0 / 1e9 }
    }

    static func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        var rng = SeededGenerator(seed: seed)
        for i in 0..<count { p[i] = Float(rng.nextUnit()) - 0.5 }
        return p
    }

    /// Model FLOPs of one training step (forward + backward): 6 per parameter per token for every
    /// matrix (the tied head included, position embeddings excluded) plus attention's scores and
    /// weighted sums over the full T×T square, as PyTorch computes them.
    public static func trainingFLOPs(_ c: ModelConfig, batch: Int, seqLen: Int) -> Double {
        let tokens = Double(batch * seqLen)
        let perLayer = Double(c.dModel * 3 * c.dModel + c.dModel * c.dModel + 2 * c.dModel * c.dMLP)
        let matrices = Double(c.nLayers) * perLayer + Double(c.vocabSize * c.dModel)
        let attention = 12.0 * Double(c.nLayers) * Double(batch) * Double(seqLen * seqLen) * Double(c.dModel)
        return 6 * matrices * tokens + attention
    }

    /// Median step time of a configuration (random tokens, AdamW, clipping) after one warm-up step,
    /// with the medians of its phases, the process's peak resident set and the heap allocations of
    /// the timed steps when given a counter (counting brackets exactly the timed work).
    /// The timed steps of one pass, and what the pass saw of memory and allocation.
    struct StepSamples {
        var total: [Double] = [], forward: [Double] = [], backward: [Double] = [], update: [Double] = []
        var peakRSSMiB: Double?, baselineRSSMiB: Double?
        var allocationsPerStep: Double?
    }

    /// A fresh model, cache and optimizer, one warm-up step, then `steps` timed steps.
    static func sampleTrainingSteps(_ bench: TrainingConfig, steps: Int, flow: GradientFlow, game: TrainingGame = .teacherForced,
                                    allocationCounter: AllocationCounter?) throws -> StepSamples {
        let rssBaseline = ResidentSet.resetPeak()
        var config = bench.model
        if case .multiToken(let heads) = game { config.predictionHeads = heads }
        let model = Transformer(config: config)
        model.initialize(seed: 1)
        model.flow = flow
        let cache = model.makeCache(batch: bench.batch, seqLen: bench.seqLen)
        var rng = SeededGenerator(seed: 7)
        let n = bench.batch * bench.seqLen
        let tokens = (0..<n).map { _ in Int32(rng.nextInt(below: config.vocabSize)) }
        let targets = (0..<n).map { _ in Int32(rng.nextInt(below: config.vocabSize)) }
        let trainingStep = TrainingStep(model: model, optimizer: AdamW(), clip: 1)
        let runner = GameRunner(game: game, model: model, cache: cache, batch: bench.batch, seqLen: bench.seqLen, seed: 1)
        var samples = StepSamples()
        let allocationsBefore = allocationCounter?.total
        for i in 0...steps {
            if i > 0 { allocationCounter?.start() }
            try tokens.withUnsafeBufferPointer { x in
                try targets.withUnsafeBufferPointer { y in
                    _ = try runner.step(trainingStep, step: i + 1, lr: 1e-4, inputs: x.baseAddress!, targets: y.baseAddress!)
                }
            }
            allocationCounter?.stop()
            if i > 0 {
                let p = trainingStep.phases
                samples.total.append(Double(p.end - p.start) / 1e6)
                samples.forward.append(Double(p.forwardDone - p.zeroed) / 1e6)
                samples.backward.append(Double(p.backwardDone - p.forwardDone) / 1e6)
                samples.update.append(Double(p.end - p.backwardDone + p.zeroed - p.start) / 1e6)
            }
        }
        samples.allocationsPerStep = allocationCounter.map { Double($0.total - allocationsBefore!) / Double(steps) }
        samples.peakRSSMiB = ResidentSet.peakMiB()
        samples.baselineRSSMiB = rssBaseline
        return samples
    }

    /// One figure from several passes of the same flow: medians over all their timed steps, the
    /// largest peak RSS (each pass's own, from its own baseline) and the most allocations per step.
    static func summarize(_ passes: [StepSamples], _ bench: TrainingConfig, flow: GradientFlow) -> TrainStep {
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        let ms = median(passes.flatMap(\.total))
        let n = bench.batch * bench.seqLen
        let flop = trainingFLOPs(bench.model, batch: bench.batch, seqLen: bench.seqLen)
        let peak = passes.compactMap(\.peakRSSMiB).max()
        let baseline = passes.first { $0.peakRSSMiB == peak }?.baselineRSSMiB ?? passes.first?.baselineRSSMiB
        let allocations = passes.compactMap(\.allocationsPerStep).max()
        return TrainStep(name: bench.name, config: bench.summary, flow: flow.description, threads: Parallel.threadCount,
                         gflopPerStep: flop / 1e9, msPerStep: ms, tokensPerSecond: Double(n) / (ms / 1000),
                         gflops: flop / 1e9 / (ms / 1000), mfu: 0, forwardMs: median(passes.flatMap(\.forward)),
                         backwardMs: median(passes.flatMap(\.backward)), optimizerMs: median(passes.flatMap(\.update)),
                         peakRSSMiB: peak, baselineRSSMiB: baseline, allocationsPerStep: allocations)
    }
}
