// myopia-fuzz: the mutation fuzzer of Myopia's file parsers (tools/fuzz/README.md).
//
//   myopia-fuzz [run] [--inputs N] [--seed S] [--timeout SEC] [--memory-mb MB] [--jobs J]
//                     [--targets a,b,...] [--corpus DIR] [--out DIR] [--verbose]
//   myopia-fuzz repro TARGET INDEX [--seed S] [--corpus DIR] [--save FILE]
//   myopia-fuzz check TARGET FILE
//   myopia-fuzz seeds [--corpus DIR] [--fixtures DIR]
//   myopia-fuzz list
//
// `run` gives each target to a child process (`myopia-fuzz worker ...`), which announces each input
// before running it and reports what it did after. A child that dies (a trap, a signal, an
// allocation past its address-space limit) is a crash of the input it announced last; one that
// stays on an input past --timeout is killed and the input is a hang. Either way the input is
// saved under --out and a new child carries on from the next one. The summary lists, per target,
// inputs, accepted, refused, bad refusals, crashes, hangs, the slowest input and the distinct
// refusals; it is also written to OUT/summary.json. Exit status 0 when nothing was found.

import Foundation
import Myopia
import MyopiaFuzz
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

setvbuf(stdout, nil, _IOLBF, 0)

struct Options {
    var command = "run"
    var positional: [String] = []
    var inputs = 10_000
    var seed: UInt64 = 1
    var timeout = 5.0
    var memoryMB = 4096
    var jobs = 1
    var targets: [String] = FuzzTarget.all.map(\.name)
    var corpus = "tools/fuzz/corpus"
    var fixtures = "Tests/Fixtures"
    var out = ".build/fuzz"
    var save: String?
    var verbose = false
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("myopia-fuzz: \(message)\n".utf8))
    exit(2)
}

func number(_ text: String, _ flag: String) -> Int {
    guard let n = Int(text), n >= 0 else { fail("\(flag) takes a number, not \(text)") }
    return n
}

func parseOptions() -> Options {
    var o = Options()
    var args = Array(CommandLine.arguments.dropFirst())
    if let first = args.first, !first.hasPrefix("-") { o.command = first; args.removeFirst() }
    var i = 0
    func value() -> String {
        i += 1
        guard i < args.count else { fail("\(args[i - 1]) needs a value") }
        return args[i]
    }
    while i < args.count {
        switch args[i] {
        case "--inputs": o.inputs = number(value(), "--inputs")
        case "--seed": o.seed = UInt64(number(value(), "--seed"))
        case "--timeout":
            guard let t = Double(value()), t > 0 else { fail("--timeout takes seconds") }
            o.timeout = t
        case "--memory-mb": o.memoryMB = number(value(), "--memory-mb")
        case "--jobs": o.jobs = max(1, number(value(), "--jobs"))
        case "--targets": o.targets = value().split(separator: ",").map(String.init)
        case "--corpus": o.corpus = value()
        case "--fixtures": o.fixtures = value()
        case "--out": o.out = value()
        case "--save": o.save = value()
        case "--verbose", "-v": o.verbose = true
        case "--help", "-h":
            print(helpText)
            exit(0)
        default:
            if args[i].hasPrefix("-") { fail("unknown option \(args[i]) (see --help)") }
            o.positional.append(args[i])
        }
        i += 1
    }
    for t in o.targets where FuzzTarget.named(t) == nil {
        fail("unknown target \(t) (known: \(FuzzTarget.all.map(\.name).joined(separator: ", ")))")
    }
    return o
}

let helpText = """
    USAGE: myopia-fuzz [run] [--inputs N] [--seed S] [--timeout SEC] [--memory-mb MB] [--jobs J]
                             [--targets a,b] [--corpus DIR] [--out DIR] [--verbose]
           myopia-fuzz repro TARGET INDEX [--seed S] [--save FILE]
           myopia-fuzz check TARGET FILE
           myopia-fuzz seeds [--corpus DIR] [--fixtures DIR]
           myopia-fuzz list

    Mutation-fuzzes every parser a user's file reaches. Defaults: 10000 inputs per target, seed 1,
    a 5 s limit per input (longer is a hang), a 4096 MB address-space limit per child (an
    allocation past it is a crash), seeds from tools/fuzz/corpus, findings under .build/fuzz.
    """

// MARK: - Worker (one child process)

/// Runs inputs from..<to of one target, announcing each one first: "B i", then
/// "E i STATUS SECONDS KIND<TAB>MESSAGE" (STATUS A accepted, R refused, X bad refusal), and at the
/// end "M PEAK_KB" and "D".
func worker(_ o: Options) -> Never {
    guard o.positional.count == 3, let target = FuzzTarget.named(o.positional[0]),
          let from = Int(o.positional[1]), let to = Int(o.positional[2]) else { fail("worker TARGET FROM TO") }
    // An allocation past this limit fails, and Swift traps on a failed allocation: a crash.
    var limit = rlimit(rlim_cur: rlim_t(o.memoryMB) << 20, rlim_max: rlim_t(o.memoryMB) << 20)
    #if os(Linux)
    _ = setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
    #else
    _ = setrlimit(RLIMIT_AS, &limit)
    #endif
    let scratch = URL(fileURLWithPath: o.out).appendingPathComponent("scratch-\(getpid())")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let campaign: Campaign
    do { campaign = try Campaign(target: target, corpus: URL(fileURLWithPath: o.corpus), runSeed: o.seed, scratch: scratch) } catch {
        fail("cannot start \(target.name): \(error)")
    }
    func clean(_ s: String) -> String {
        String(s.prefix(600)).replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: " ")
    }
    for i in from..<to {
        print("B \(i)")
        let (outcome, seconds) = campaign.run(i)
        switch outcome {
        case .accepted: print("E \(i) A \(seconds) -\t-")
        case .rejected(let kind, let message): print("E \(i) R \(seconds) \(clean(kind))\t\(clean(message))")
        case .badRejection(let why): print("E \(i) X \(seconds) -\t\(clean(why))")
        }
    }
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    print("M \(usage.ru_maxrss)")
    print("D")
    try? FileManager.default.removeItem(at: scratch)
    FuzzTarget.removeCompanions()
    exit(0)
}

// MARK: - Parent

/// A child working through one target's inputs, and what has been read from it.
final class Child {
    let campaign: Campaign
    let process = Process()
    let stdoutFD: Int32
    let stderrFD: Int32
    private let outPipe = Pipe(), errPipe = Pipe()
    var buffer: [UInt8] = []
    var stderrTail: [UInt8] = []
    var current: Int?
    var currentStart = 0.0
    var lastFinished: Int
    var done = false
    var stdoutOpen = true, stderrOpen = true

    init(campaign: Campaign, from: Int, to: Int, options o: Options) throws {
        self.campaign = campaign
        lastFinished = from - 1
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if !FileManager.default.fileExists(atPath: process.executableURL!.path) {
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        }
        process.arguments = ["worker", campaign.target.name, "\(from)", "\(to)", "--seed", "\(o.seed)", "--corpus", o.corpus,
                             "--memory-mb", "\(o.memoryMB)", "--out", o.out]
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        stdoutFD = outPipe.fileHandleForReading.fileDescriptor
        stderrFD = errPipe.fileHandleForReading.fileDescriptor
    }

    /// After the child has exited: the rest of what it wrote to stderr (a trap's message).
    func drainStderr() {
        guard stderrOpen else { return }
        stderrTail += errPipe.fileHandleForReading.readDataToEndOfFile()
        if stderrTail.count > 8192 { stderrTail.removeFirst(stderrTail.count - 8192) }
        stderrOpen = false
    }

    /// Reads what is ready on `fd`; returns complete stdout lines.
    func read(_ fd: Int32) -> [String] {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
        if n <= 0 {
            if fd == stdoutFD { stdoutOpen = false } else { stderrOpen = false }
            return []
        }
        if fd == stderrFD {
            stderrTail += chunk[0..<n]
            if stderrTail.count > 8192 { stderrTail.removeFirst(stderrTail.count - 8192) }
            return []
        }
        buffer += chunk[0..<n]
        var lines: [String] = []
        while let nl = buffer.firstIndex(of: 0x0A) {
            lines.append(String(decoding: buffer[..<nl], as: UTF8.self))
            buffer.removeSubrange(...nl)
        }
        return lines
    }
}

func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, p, n)
    #else
    return Darwin.read(fd, p, n)
    #endif
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func runAll(_ o: Options) -> Int32 {
    let out = URL(fileURLWithPath: o.out)
    try? FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    let corpus = URL(fileURLWithPath: o.corpus)
    let scratch = out.appendingPathComponent("scratch-parent")
    var tallies: [String: FuzzTally] = [:]
    var campaigns: [String: Campaign] = [:]
    for name in o.targets {
        guard let target = FuzzTarget.named(name) else { continue }
        do { campaigns[name] = try Campaign(target: target, corpus: corpus, runSeed: o.seed, scratch: scratch) } catch {
            fail("cannot read the seeds of \(name): \(error)")
        }
        tallies[name] = FuzzTally(target: name)
    }
    let started = now()
    print("fuzzing \(o.targets.count) targets, \(o.inputs) inputs each (seed \(o.seed), \(o.timeout) s limit per input, "
          + "\(o.memoryMB) MB per child, \(o.jobs) at a time); findings go to \(out.path)")

    var pending = o.targets.map { (name: $0, from: 0) }
    var running: [Child] = []
    var restarts: [String: Int] = [:]

    func save(_ kind: String, _ child: Child, _ index: Int, note: String) {
        let folder = out.appendingPathComponent(kind)
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let base = folder.appendingPathComponent("\(child.campaign.target.name)-\(index)")
        try? Data(child.campaign.input(index)).write(to: base.appendingPathExtension("bin"))
        try? Data((note + "\n--- stderr ---\n" + String(decoding: child.stderrTail, as: UTF8.self)).utf8).write(to: base.appendingPathExtension("txt"))
    }

    func start(_ name: String, from: Int) {
        guard from < o.inputs, let campaign = campaigns[name] else {
            print(String(format: "%@: done in %.1f s", name, now() - started))
            return
        }
        do { running.append(try Child(campaign: campaign, from: from, to: o.inputs, options: o)) } catch {
            fail("cannot start a worker: \(error)")
        }
    }

    while !pending.isEmpty || !running.isEmpty {
        while running.count < o.jobs, !pending.isEmpty {
            let next = pending.removeFirst()
            start(next.name, from: next.from)
        }
        guard !running.isEmpty else { continue }
        var fds: [pollfd] = []
        for child in running {
            if child.stdoutOpen { fds.append(pollfd(fd: child.stdoutFD, events: Int16(POLLIN), revents: 0)) }
            if child.stderrOpen { fds.append(pollfd(fd: child.stderrFD, events: Int16(POLLIN), revents: 0)) }
        }
        _ = poll(&fds, nfds_t(fds.count), 100)
        for fd in fds where fd.revents != 0 {
            guard let child = running.first(where: { $0.stdoutFD == fd.fd || $0.stderrFD == fd.fd }) else { continue }
            let name = child.campaign.target.name
            for line in child.read(fd.fd) {
                let parts = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: false)
                switch parts.first {
                case "B":
                    child.current = Int(parts[1])
                    child.currentStart = now()
                case "E":
                    guard parts.count >= 5, let i = Int(parts[1]), let seconds = Double(parts[3]) else { continue }
                    let rest = parts[4].split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                    let kind = String(rest[0]), message = rest.count > 1 ? String(rest[1]) : ""
                    let outcome: FuzzTarget.Outcome
                    switch parts[2] {
                    case "A": outcome = .accepted
                    case "R": outcome = .rejected(kind: kind, message: message)
                    default:
                        outcome = .badRejection(message)
                        save("bad", child, i, note: "\(name) input \(i): \(message)")
                    }
                    tallies[name]!.record(i, outcome, seconds: seconds)
                    child.current = nil
                    child.lastFinished = i
                    if o.verbose || (i + 1) % 2000 == 0 {
                        print(String(format: "%@: %d/%d inputs, %.1f s", name, i + 1, o.inputs, now() - started))
                    }
                case "M":
                    let mb = Double(parts[1]).map { $0 / 1024 } ?? 0
                    tallies[name]!.peakMemoryMB = max(tallies[name]!.peakMemoryMB, mb)
                case "D":
                    child.done = true
                default:
                    break
                }
            }
        }
        // Hangs: an input past the limit; its child is killed and a new one takes the next input.
        for child in running where !child.done {
            guard let i = child.current, now() - child.currentStart > o.timeout else { continue }
            kill(child.process.processIdentifier, SIGKILL)
            let name = child.campaign.target.name
            tallies[name]!.hangs.append(i)
            tallies[name]!.inputs += 1
            save("hangs", child, i, note: "\(name) input \(i): still running after \(o.timeout) s")
            print("\(name): input \(i) HANGS (> \(o.timeout) s); saved to \(out.appendingPathComponent("hangs").path)")
            child.current = nil
            child.done = true
            child.lastFinished = i
        }
        // Children that finished, were killed, or died.
        let finished = running.filter { $0.done || !$0.stdoutOpen }
        for child in finished {
            child.process.waitUntilExit()
            child.drainStderr()
            let name = child.campaign.target.name
            let status = child.process.terminationStatus, signaled = child.process.terminationReason == .uncaughtSignal
            if let i = child.current {
                let how = signaled ? "signal \(status)" : "exit status \(status)"
                tallies[name]!.crashes.append(i)
                tallies[name]!.inputs += 1
                save("crashes", child, i, note: "\(name) input \(i): the process died (\(how))")
                print("\(name): input \(i) CRASHES (\(how)); saved to \(out.appendingPathComponent("crashes").path)")
                child.lastFinished = i
            } else if !child.done {
                // Died between inputs: carry on from the next one, but not forever.
                restarts[name, default: 0] += 1
                if restarts[name]! > 3 {
                    fail("\(name): the worker keeps dying outside any input:\n\(String(decoding: child.stderrTail, as: UTF8.self))")
                }
            }
            pending.insert((name, child.lastFinished + 1), at: 0)
        }
        running.removeAll { child in finished.contains { $0 === child } }
    }
    try? FileManager.default.removeItem(at: scratch)
    FuzzTarget.removeCompanions()
    return report(o, tallies, seconds: now() - started)
}

func report(_ o: Options, _ tallies: [String: FuzzTally], seconds: Double) -> Int32 {
    let rows = o.targets.compactMap { tallies[$0] }
    print("")
    func row(_ cells: [String]) -> String {
        let widths = [15, 8, 9, 9, 5, 8, 6, 10, 9, 8]
        return zip(cells, widths).enumerated().map { i, cw in
            let (cell, width) = cw
            let pad = String(repeating: " ", count: max(0, width - cell.count))
            return i == 0 ? cell + pad : pad + cell
        }.joined(separator: " ")
    }
    print(row(["target", "inputs", "accepted", "refused", "bad", "crashes", "hangs", "slowest s", "distinct", "peak MB"]))
    for t in rows {
        print(row([t.target, "\(t.inputs)", "\(t.accepted)", "\(t.rejected)", "\(t.badRejections)", "\(t.crashes.count)",
                   "\(t.hangs.count)", String(format: "%.3f", t.slowestSeconds), "\(t.errorKinds.count)", String(format: "%.0f", t.peakMemoryMB)]))
    }
    let total = rows.reduce(into: (inputs: 0, bad: 0, crashes: 0, hangs: 0)) {
        $0.inputs += $1.inputs; $0.bad += $1.badRejections; $0.crashes += $1.crashes.count; $0.hangs += $1.hangs.count
    }
    print(String(format: "%d inputs in %.0f s: %d crashes, %d hangs, %d bad refusals; distinct refusals %d (kinds), %d (messages)",
                 total.inputs, seconds, total.crashes, total.hangs, total.bad,
                 rows.reduce(0) { $0 + $1.errorKinds.count }, rows.reduce(0) { $0 + $1.distinctMessages }))
    if o.verbose {
        for t in rows {
            print("\n\(t.target): refusals by kind")
            for (kind, n) in t.errorKinds.sorted(by: { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }) {
                print(String(format: "  %6d  %@", n, kind))
            }
        }
    }
    for t in rows where !t.badExamples.isEmpty {
        print("\n\(t.target): bad refusals")
        for e in t.badExamples { print("  \(e)") }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let summary = URL(fileURLWithPath: o.out).appendingPathComponent("summary.json")
    if let data = try? encoder.encode(rows) { try? data.write(to: summary) }
    print("summary: \(summary.path)")
    return rows.allSatisfy(\.passed) ? 0 : 1
}

// MARK: - repro, seeds, list

func repro(_ o: Options) -> Never {
    guard o.positional.count == 2, let target = FuzzTarget.named(o.positional[0]), let index = Int(o.positional[1]) else {
        fail("repro TARGET INDEX")
    }
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-repro-\(getpid())")
    defer { try? FileManager.default.removeItem(at: scratch); FuzzTarget.removeCompanions() }
    do {
        let campaign = try Campaign(target: target, corpus: URL(fileURLWithPath: o.corpus), runSeed: o.seed, scratch: scratch)
        if let save = o.save { try Data(campaign.input(index)).write(to: URL(fileURLWithPath: save)) }
        print("\(target.name) input \(index): \(campaign.input(index).count) bytes")
        let (outcome, seconds) = campaign.run(index)
        print(String(format: "%.3f s: %@", seconds, "\(outcome)"))
        exit(0)
    } catch {
        fail("\(error)")
    }
}

/// Runs one file through a target (a finding, or any file a person wants checked).
func check(_ o: Options) -> Never {
    guard o.positional.count == 2, let target = FuzzTarget.named(o.positional[0]) else { fail("check TARGET FILE") }
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-check-\(getpid())")
    defer { try? FileManager.default.removeItem(at: scratch); FuzzTarget.removeCompanions() }
    do {
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: o.positional[1])))
        let start = Date()
        let outcome = target.run(bytes, in: scratch)
        print(String(format: "%.3f s: %@", Date().timeIntervalSince(start), "\(outcome)"))
        exit(0)
    } catch {
        fail("\(error)")
    }
}

func writeSeeds(_ o: Options) -> Never {
    let corpus = URL(fileURLWithPath: o.corpus)
    for name in o.targets {
        let dir = corpus.appendingPathComponent(name)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (file, bytes) in try Seeds.make(name, fixtures: URL(fileURLWithPath: o.fixtures)) {
                try Data(bytes).write(to: dir.appendingPathComponent(file))
                print("\(dir.appendingPathComponent(file).path): \(bytes.count) bytes")
            }
        } catch {
            fail("\(name): \(error)")
        }
    }
    FuzzTarget.removeCompanions()
    exit(0)
}

let options = parseOptions()
switch options.command {
case "worker": worker(options)
case "run": exit(runAll(options))
case "repro": repro(options)
case "check": check(options)
case "seeds": writeSeeds(options)
case "list":
    for t in FuzzTarget.all { print(t.name) }
    exit(0)
default: fail("unknown command \(options.command) (see --help)")
}
