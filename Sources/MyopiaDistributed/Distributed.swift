import Foundation

/// Where this process stands in a job: the group every command uses (one process unless an MPI
/// launcher started it), and the refusal of a binary built without MPI that a launcher started
/// anyway (it would run N copies that overwrite each other's files).
public enum Distributed {
    /// The job's processes; `start()` sets it once, before any command runs.
    nonisolated(unsafe) public private(set) static var group: any ProcessGroup = SingleProcess()

    /// What Open MPI (`OMPI_COMM_WORLD_SIZE`), MPICH and Intel MPI (`PMI_SIZE`) and PMIx launchers
    /// such as Slurm's (`PMIX_RANK`) set in every process they start.
    public static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]

    /// The command that builds a binary that can join an MPI job.
    public static let buildCommand = "swift build -c release --traits MPI"

    /// Whether this binary was built with the MPI trait.
    public static var isBuiltWithMPI: Bool {
        #if MPI
        return true
        #else
        return false
        #endif
    }

    /// The first launcher variable set in `environment`, if any.
    public static func launcherVariable(in environment: [String: String]) -> String? {
        launcherVariables.first { environment[$0] != nil }
    }

    /// Processes of this job on this machine, as the launcher says (Open MPI, MPICH); nil when it does not.
    public static func localRanks(in environment: [String: String]) -> Int? {
        for name in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"] {
            if let n = environment[name].flatMap(Int.init), n > 0 { return n }
        }
        return nil
    }

    /// How the data-parallel step sends its gradient: the most floats in a bucket, and whether
    /// buckets start during backward (nil: where the group's collectives run without waiting).
    /// Neither changes a bit of the result; every rank must use the same bucket.
    public struct Exchange: Equatable, Sendable {
        public var bucketFloats: Int
        public var overlap: Bool?
        public static let standard = Exchange(bucketFloats: 1 << 22, overlap: nil)

        /// `MYOPIA_BUCKET_MB` (MiB, fractions allowed: 16 is the default) and `MYOPIA_OVERLAP` (1 or 0).
        public init(environment: [String: String]) throws {
            self = .standard
            if let text = environment["MYOPIA_BUCKET_MB"] {
                guard let mb = Double(text), mb.isFinite, mb > 0, mb <= 1_048_576 else {
                    throw DistributedError.invalidVariable(name: "MYOPIA_BUCKET_MB", expected: "a positive number of MiB (16 by default)", found: text)
                }
                bucketFloats = max(1, Int(mb * 262_144))
            }
            if let text = environment["MYOPIA_OVERLAP"] {
                guard text == "0" || text == "1" else {
                    throw DistributedError.invalidVariable(name: "MYOPIA_OVERLAP", expected: "1 (start buckets during backward) or 0 (after it)", found: text)
                }
                overlap = text == "1"
            }
        }

        public init(bucketFloats: Int, overlap: Bool?) {
            self.bucketFloats = bucketFloats
            self.overlap = overlap
        }
    }

    /// The gradient exchange's settings; `start()` reads them from the environment.
    nonisolated(unsafe) public private(set) static var exchange = Exchange.standard

    /// Joins the MPI job when a launcher started this process; otherwise the group stays one process.
    /// Throws `DistributedError.notBuiltWithMPI` when a launcher started a binary built without MPI,
    /// `.invalidVariable` for a malformed exchange setting, and `.mismatch` when the ranks' bucket
    /// sizes differ.
    public static func start(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        exchange = try Exchange(environment: environment)
        guard let variable = launcherVariable(in: environment) else { return }
        #if MPI
        group = try MPIProcessGroup()
        atexit { Distributed.group.finish() }
        try Agreement.check([("the gradient bucket (MYOPIA_BUCKET_MB, in floats)", "\(exchange.bucketFloats)")], in: group)
        #else
        throw DistributedError.notBuiltWithMPI(variable: variable)
        #endif
    }

    /// Sets the group (tests).
    public static func use(_ group: any ProcessGroup) { self.group = group }
}

extension ProcessGroup {
    /// MPI_Finalize where there is MPI; nothing for one process.
    func finish() {
        #if MPI
        (self as? MPIProcessGroup)?.finalize()
        #endif
    }
}

public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// A launcher started a binary built without MPI.
    case notBuiltWithMPI(variable: String)
    /// MPI_Init_thread failed.
    case initFailed
    /// A rank's setting differs from rank 0's, checked before any work.
    case mismatch(rank: Int, field: String, leader: String, found: String)
    /// A command that runs on one process only, started as several.
    case singleProcessOnly(command: String, ranks: Int)
    /// An environment variable with a value it cannot take.
    case invalidVariable(name: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .notBuiltWithMPI(let variable):
            return "started by an MPI launcher (\(variable) is set) but built without MPI: build with `\(Distributed.buildCommand)` (Open MPI's libopenmpi-dev installed) and run that binary under mpirun"
        case .initFailed:
            return "MPI_Init_thread failed: the launcher's environment is not one this MPI library can join"
        case .mismatch(let rank, let field, let leader, let found):
            return "rank \(rank) differs from rank 0 in \(field): \(found) against \(leader); every rank must run the same settings, data and GEMM arithmetic"
        case .invalidVariable(let name, let expected, let found):
            return "\(name) must be \(expected), not '\(found)'"
        case .singleProcessOnly(let command, let ranks):
            return "`myopia \(command)` runs on one process only, not under an MPI launcher (\(ranks) ranks): run it without mpirun"
        }
    }
}

/// The start-up check that every rank is about to compute the same thing: named values (a
/// config's checksum, the data's, the GEMM arithmetic, the step resumed) gathered from every rank
/// and compared with rank 0's. Every rank sees every value, so all of them refuse together.
public enum Agreement {
    public static func check(_ items: [(name: String, value: String)], in group: any ProcessGroup) throws {
        guard group.size > 1 else { return }
        let separator = "\u{1F}"
        let mine = items.map { $0.name + "=" + $0.value }.joined(separator: separator)
        let all = group.allGather(Array(mine.utf8)).map { String(decoding: $0, as: UTF8.self).components(separatedBy: separator) }
        let leader = all[0]
        for (rank, theirs) in all.enumerated().dropFirst() {
            for (i, item) in items.enumerated() {
                let expected = i < leader.count ? leader[i] : "", found = i < theirs.count ? theirs[i] : ""
                if expected != found {
                    let prefix = item.name.count + 1
                    throw DistributedError.mismatch(rank: rank, field: item.name, leader: String(expected.dropFirst(prefix)),
                                                    found: String(found.dropFirst(prefix)))
                }
            }
        }
    }
}
