// Coverage-guided fuzzing with libFuzzer (tools/fuzz/libfuzzer.sh builds this with
// `--sanitize fuzzer -Xswiftc -DMYOPIA_LIBFUZZER`; libFuzzer then supplies `main`).
//
// MYOPIA_FUZZ_TARGET names the target (one of `myopia-fuzz list`). Each input goes through the
// same harness as the mutation fuzzer; a refusal that is not an InputError naming the file and a
// field stops the run as a crash, so libFuzzer saves it as crash-*. Traps, timeouts (-timeout) and
// oversized allocations (-malloc_limit_mb) are libFuzzer's own findings.
//
// A plain `swift build` compiles the stub below instead, which says how to build the real thing.

import Foundation
import MyopiaFuzz

#if MYOPIA_LIBFUZZER
private let target: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["MYOPIA_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget.named(name) else {
        fatalError("set MYOPIA_FUZZ_TARGET to one of: \(FuzzTarget.all.map(\.name).joined(separator: ", "))")
    }
    return t
}()

private let folder: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-libfuzzer-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    if case .badRejection(let why) = target.run(bytes, in: folder) {
        fatalError("bad refusal: \(why)")
    }
    return 0
}
#else
@main
enum LibFuzzerStub {
    static func main() {
        FileHandle.standardError.write(Data("myopia-libfuzzer is built by tools/fuzz/libfuzzer.sh (swift build --sanitize fuzzer -Xswiftc -DMYOPIA_LIBFUZZER)\n".utf8))
        exit(2)
    }
}
#endif
