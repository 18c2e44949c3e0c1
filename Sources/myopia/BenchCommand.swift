import ArgumentParser
import CMyopiaAllocCounter
import Foundation
import Myopia
import MyopiaKernels
import MyopiaLab

struct BenchCommand: ConfigFileCommand {
    static let configExample = #"{"steps": 10}"#
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure GEMM throughput, the training step against the machine's FMA peak, tokenizer and decoding speed.",
        discussion: """
        First the GEMM kernel in use and how it was chosen (MYOPIA_KERNEL=portable|avx2|avx512 forces one) and the FMA peak of each vector width the CPU has (ymm, zmm); then GEMM on the transformer shapes (M,K,N) = (2048,256,768), (2048,768,256), (2048,256,1024), (2048,1024,256), (2048,256,8192), (256,2048,768) in the layouts A·B, A·Bᵀ, Aᵀ·B, beside OpenBLAS when libopenblas is installed; then the training step of SMALL (vocab 8192, seq 256, 4 layers, 4 heads, d_model 256, batch 8) and of GPT-2 124M (batch 4, seq 64), vanilla and myopic, with the phases, model FLOP utilisation, peak resident set and heap allocations per step (0: the step allocates nothing) of each; each training game's step on SMALL (scheduled sampling ρ = 0.25, consequence λ = 0.5 K = 4 M = 4 sampled, multi-token N = 2) against teacher-forced; the exact gradient horizon against backward passes; and encode/decode MB/s of the gpt2 and smollm2-135m tokenizers on tiny-shakespeare repeated to 4 MB; and greedy cached decoding of smollm2-135m, one token at a time, with the fp32 weights it streams per second; and sampling 64 tokens after "The capital of France is" with N = 1, 4, 16, 64 samples decoding together (fp32), and N = 1, 16 from the GGUF's quantised blocks (--generate-samples picks the N; each skipped when its asset cannot be fetched). Figures only: run it on a quiet machine.

        Examples:
          myopia bench --json > bench.json
          myopia bench --threads 2 --no-gemm
          # tokenizers only:
          myopia bench --no-gemm --no-training --no-games --no-horizon --no-decode
          # decoding only:
          myopia bench --no-gemm --no-training --no-games --no-horizon \\
              --no-tokenizers
          # the training games' step against teacher-forced:
          myopia bench --no-gemm --no-training --no-horizon --no-tokenizers \\
              --no-decode
          # the data-parallel step, 2 ranks x 1 thread (docs/distributed.md):
          mpirun -np 2 myopia bench --data-parallel --threads 1
        """)

    @Option(help: "Thread counts to measure (default: 1 and all cores).") var threads: [Int] = []
    @Option(help: "Training steps to time (the median is reported).") var steps = 5
    @Flag(inversion: .prefixedNo, help: "Measure GEMM.") var gemm = true
    @Flag(inversion: .prefixedNo, help: "Measure the training step (vanilla and myopic).") var training = true
    @Option(help: "Training configurations to step: small, gpt2-124m.") var models: [String] = ["small", "gpt2-124m"]
    @Flag(inversion: .prefixedNo, help: "Time each training game's step on SMALL against teacher-forced.") var games = true
    @Flag(inversion: .prefixedNo, help: "Measure the gradient horizon against backward passes.") var horizon = true
    @Flag(inversion: .prefixedNo, help: "Measure tokenizer encode/decode MB/s (gpt2, smollm2-135m).") var tokenizers = true
    @Flag(inversion: .prefixedNo, help: "Measure cached decoding of smollm2-135m (tokens/s).") var decode = true
    @Option(name: .customLong("generate-samples"), parsing: .upToNextOption,
            help: "Sample counts N of the generation figures (fp32 at each, quantised at 1 and 16 where listed).")
    var generateSamples: [Int] = Bench.generateSampleCounts
    @Flag(name: .customLong("data-parallel"), help: "Only time the data-parallel step of each --models configuration (--shards shards over this MPI job's ranks): step, reduce and bytes per step.")
    var dataParallel = false
    @Option(help: "Shards of the batch under --data-parallel (at least the ranks).") var shards = 2
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<BenchCommand>

    func validate() throws {
        guard steps > 0 else { throw ValidationError("--steps must be positive") }
        guard threads.allSatisfy({ $0 > 0 }) else { throw ValidationError("--threads must be positive") }
        guard generateSamples.allSatisfy({ $0 > 0 }) else { throw ValidationError("--generate-samples must be positive") }
        for m in models where Bench.trainingConfigs[m.lowercased()] == nil {
            throw ValidationError("unknown --models entry '\(m)' (expected small or gpt2-124m)")
        }
    }

    func run() throws {
        if dataParallel { return try runDataParallel() }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let counts = threads.isEmpty ? Array(Set([1, cores])).sorted() : threads
        Terminal.quiet = quiet || json
        Terminal.info("kernel: \(GEMM.kernelName) (\(GEMM.kernelSelectionSummary)), \(cores) cores")
        let report = try reportingErrors {
            try Bench.run(threads: counts, gemm: gemm, training: training,
                          models: models.compactMap { Bench.trainingConfigs[$0.lowercased()] }, games: games, horizon: horizon,
                          tokenizers: tokenizers, decode: decode, generateSamples: generateSamples, trainSteps: steps, allocationCounter: .process,
                          log: Terminal.info)
        }
        if json { try printJSON(report) }
        else {
            print("kernel: \(report.kernel) (\(GEMM.kernelSelectionSummary))")
            for (width, byThreads) in report.fmaPeakGflopsByWidth.sorted(by: { $0.key < $1.key }) {
                print("FMA peak, \(width): " + byThreads.sorted { Int($0.key)! < Int($1.key)! }
                    .map { String(format: "%.1f GFLOP/s on %@ thread(s)", $0.value, $0.key) }.joined(separator: ", "))
            }
            for (t, r) in report.gemmGeomeanRatio.sorted(by: { $0.key < $1.key }) {
                print(String(format: "GEMM vs OpenBLAS, %@ thread(s): geometric mean ratio %.2f", t, r))
            }
            for s in report.training {
                print(String(format: "%@ train step, %@, %d thread(s): %.1f ms/step (forward %.1f, backward %.1f, optimiser %.1f), "
                             + "%.0f tokens/s, %.1f GFLOP/s (MFU %.2f of %.0f peak), peak RSS %@, allocations per step %@",
                             s.name, s.flow, s.threads, s.msPerStep, s.forwardMs, s.backwardMs, s.optimizerMs, s.tokensPerSecond,
                             s.gflops, s.mfu, report.fmaPeakGflops["\(s.threads)"] ?? 0,
                             s.peakRSSMiB.map { String(format: "%.0f MiB", $0) } ?? "n/a", s.allocationsText))
            }
            for (t, r) in report.myopicOverVanilla.sorted(by: { $0.key < $1.key }) {
                print(String(format: "myopic / vanilla step time, %@ thread(s): %.3f", t.replacingOccurrences(of: "/", with: ", "), r))
            }
            for g in report.games {
                print(String(format: "%@ game step, %@, %d thread(s): %.1f ms/step (forward %.1f, backward %.1f, optimiser %.1f), %.2f× teacher-forced",
                             g.config, g.game, g.threads, g.msPerStep, g.forwardMs, g.backwardMs, g.optimizerMs, g.overTeacherForced))
            }
            if let h = report.horizon {
                let ks = h.horizonMs.keys.compactMap(Int.init).sorted()
                print(String(format: "horizon (%@): backward %.1f ms; ", h.config, h.backwardMs)
                      + ks.map { String(format: "K=%d %.2f passes", $0, h.horizonInBackwardPasses["\($0)"]!) }.joined(separator: ", ")
                      + String(format: "; brute force %.0f ms", h.bruteForceMs))
            }
            for t in report.tokenizers {
                print(String(format: "tokenizer %@ on %@ (%.2f MB, %d tokens): encode %.1f MB/s, decode %.1f MB/s",
                             t.tokenizer, t.corpus, Double(t.bytes) / 1e6, t.tokens, t.encodeMBPerSecond, t.decodeMBPerSecond))
            }
            for d in report.decode {
                print(String(format: "decode %@ (%.0fM parameters, fp32), %d thread(s): %.1f tokens/s, %.1f GB/s of weights; prompt processing %.0f tokens/s",
                             d.model, Double(d.parameters) / 1e6, d.threads, d.tokensPerSecond, d.weightGBPerSecond,
                             d.promptTokensPerSecond))
            }
            for g in report.generate {
                print(String(format: "generate %@ (%@ weights, %.0f MB a step), %d sample(s) together, %d thread(s): %.1f tokens/s",
                             g.model, g.weights, Double(g.weightBytesPerStep) / 1e6, g.samples, g.threads, g.tokensPerSecond))
            }
        }
    }
}

extension BenchCommand {
    /// `--data-parallel`: each configuration's sharded step over this job's ranks, on --threads
    /// threads per rank (default: the rank's share of the cores).
    func runDataParallel() throws {
        Terminal.quiet = quiet || json
        let group = Distributed.group
        if let t = threads.first { Parallel.threadCount = t }
        guard shards >= group.size, shards >= 1 else {
            throw ValidationError("--shards must be at least the \(group.size) ranks of this job")
        }
        let configs: [Bench.TrainingConfig] = models.compactMap { Bench.trainingConfigs[$0.lowercased()] }
        let figures = try reportingErrors {
            try configs.map { bench -> DataParallelBench.Figure in
                guard bench.batch % shards == 0 else {
                    throw FlagError("--shards \(shards) does not divide \(bench.name)'s batch of \(bench.batch)")
                }
                Terminal.info("\(bench.name): \(shards) shards over \(group.description), \(Parallel.threadCount) thread(s) each")
                return try DataParallelBench.measure(bench, shards: shards, steps: steps, group: group)
            }
        }
        if json { return try printJSON(figures) }
        for f in figures {
            print(String(format: "%@ data-parallel step, %d rank(s) x %d thread(s), %d shards of batch %d: %.1f ms/step, reduce %.1f ms, %.1f MB sent per step per rank in %d bucket(s)%@",
                         f.config, f.ranks, f.threadsPerRank, f.shards, f.batch, f.msPerStep, f.reduceMs, Double(f.bytesPerStep) / 1e6,
                         f.buckets, f.overlap ? ", started during backward" : ""))
        }
    }
}

extension AllocationCounter {
    /// This process's allocation counter (CMyopiaAllocCounter, linked into the CLI); nil where it
    /// cannot replace malloc (not Linux with glibc).
    static var process: AllocationCounter? {
        guard myopia_alloc_counter_available() != 0 else { return nil }
        return AllocationCounter(setCounting: { myopia_alloc_counting($0 ? 1 : 0) }, total: { Int(myopia_alloc_count()) })
    }
}
