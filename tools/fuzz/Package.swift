// swift-tools-version:6.0
// The fuzzers of Myopia's parsers, a package of their own so that building the product builds
// none of them (tools/fuzz/README.md). It depends on the repository's root package by path.
import PackageDescription

// A path dependency's identity is the name of its folder, which is wherever the repository was
// cloned to: read it off this manifest's own location (tools/fuzz/Package.swift).
let root = Context.packageDirectory.split(separator: "/").dropLast(2).last.map(String.init) ?? "Myopia"

let package = Package(
    name: "MyopiaFuzz",
    platforms: [.macOS(.v13)],
    products: [
        // The mutation fuzzer, and the libFuzzer entry (built with --sanitize fuzzer by libfuzzer.sh).
        .executable(name: "myopia-fuzz", targets: ["myopia-fuzz"]),
        .executable(name: "myopia-libfuzzer", targets: ["myopia-libfuzzer"]),
    ],
    dependencies: [
        .package(path: "../.."),
    ],
    targets: [
        .target(name: "MyopiaFuzz", dependencies: [.product(name: "Myopia", package: root)], path: "MyopiaFuzz"),
        .executableTarget(name: "myopia-fuzz", dependencies: ["MyopiaFuzz"], path: "myopia-fuzz"),
        .executableTarget(name: "myopia-libfuzzer", dependencies: ["MyopiaFuzz"], path: "myopia-libfuzzer"),
        .testTarget(name: "MyopiaFuzzTests", dependencies: ["MyopiaFuzz", "myopia-fuzz"], path: "Tests/MyopiaFuzzTests"),
    ],
    swiftLanguageModes: [.v5]
)
