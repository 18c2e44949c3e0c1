// swift-tools-version:6.1
import PackageDescription

// Layers point one way (docs/DESIGN.md §1 draws them; ModuleGraphTests keeps them): the CLI
// (myopia) -> MyopiaLab -> Myopia, the umbrella over the library's layers -> MyopiaKernels ->
// CMyopiaKernels. The fuzzers are a package of their own (tools/fuzz).
// CMyopiaAllocCounter replaces malloc to count allocations (the step allocates nothing): it links
// only into executables (the CLI, the tests), never into the Myopia / MyopiaLab libraries.
//
// MPI is a package trait, off by default: `swift build -c release --traits MPI` adds the system
// library CMPI (Open MPI, found by pkg-config as ompi-c) under MyopiaDistributed, so that
// `mpirun -np N myopia train …` trains data-parallel (docs/distributed.md). Without the trait nothing
// looks for MPI, and a binary started by a launcher refuses (Distributed.start).
//
// No unsafe flags: the FMA/AVX2 GEMM micro-kernel lives in the small C target CMyopiaKernels,
// compiled with `__attribute__((target("avx2,fma")))` and chosen at run time by a CPU check, so a
// plain `swift build -c release` gets the fast path and a machine without AVX2 (or an arm64 one)
// builds and runs the portable kernel.

/// The trait that links MPI (a constant, so the dependency lists below stay plain lists of names).
let mpiTrait: Set<String> = ["MPI"]

let package = Package(
    name: "Myopia",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Myopia", targets: ["Myopia"]),
        .library(name: "MyopiaLab", targets: ["MyopiaLab"]),
        .executable(name: "myopia", targets: ["myopia"]),
    ],
    traits: [
        .trait(name: "MPI", description: "Data-parallel training and sharded analyses under mpirun (links the system Open MPI, pkg-config ompi-c)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CMyopiaKernels"),
        .target(name: "CMyopiaAllocCounter"),
        .target(name: "MyopiaKernels", dependencies: ["CMyopiaKernels"]),
        // (a) user-input errors and file utilities; (b) the model, no file I/O;
        // (c) assets, formats, tokenizers, data; (d) training and generation. docs/DESIGN.md §1.
        .target(name: "MyopiaSupport"),
        // The process group of an MPI job (or of one process): ranks, the ordered shard sum and the
        // start-up agreement. Knows nothing of models; links MPI only under the MPI trait.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]),
        .target(name: "MyopiaDistributed", dependencies: [.target(name: "CMPI", condition: .when(traits: mpiTrait))]),
        .target(name: "MyopiaModel", dependencies: ["MyopiaSupport", "MyopiaKernels"]),
        .target(name: "MyopiaAssets", dependencies: ["MyopiaSupport"]),
        .target(name: "MyopiaFormats", dependencies: ["MyopiaSupport", "MyopiaKernels", "MyopiaModel", "MyopiaAssets"]),
        // The GGUF tokenizer reads its vocabulary from a container that MyopiaFormats parses.
        .target(name: "MyopiaTokenizers", dependencies: ["MyopiaSupport", "MyopiaAssets", "MyopiaFormats"]),
        // A text corpus becomes tokens through a tokenizer.
        .target(name: "MyopiaData", dependencies: ["MyopiaSupport", "MyopiaModel", "MyopiaTokenizers"]),
        .target(name: "MyopiaTraining", dependencies: [
            "MyopiaSupport", "MyopiaKernels", "MyopiaModel", "MyopiaFormats", "MyopiaTokenizers", "MyopiaData", "MyopiaDistributed",
        ]),
        .target(name: "MyopiaGeneration", dependencies: ["MyopiaSupport", "MyopiaKernels", "MyopiaModel"]),
        // The umbrella: `import Myopia` re-exports every layer above.
        .target(name: "Myopia", dependencies: [
            "MyopiaKernels", "MyopiaSupport", "MyopiaModel", "MyopiaAssets", "MyopiaFormats",
            "MyopiaTokenizers", "MyopiaData", "MyopiaTraining", "MyopiaGeneration", "MyopiaDistributed",
        ]),
        // The published figures reproduce compares against: a data file compiled into the binary.
        .target(name: "MyopiaLab", dependencies: ["Myopia"], resources: [.embedInCode("Reproduce/wu2024.json")]),
        .executableTarget(
            name: "myopia",
            dependencies: [
                "MyopiaLab",
                "CMyopiaAllocCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Tests. Unit targets need no network, no download and no browser; the integration targets
        // fetch assets (PyPI), load SmolLM2, drive a browser, run the demo and kill runs mid-save.
        // `swift test -c release --skip Integration` runs only the unit targets (README).
        .target(name: "MyopiaTestSupport", dependencies: ["Myopia"], path: "Tests/MyopiaTestSupport"),
        .testTarget(name: "MyopiaKernelsTests", dependencies: ["MyopiaKernels"]),
        .testTarget(name: "MyopiaTests", dependencies: ["Myopia", "MyopiaTestSupport"]),
        .testTarget(name: "MyopiaLabTests", dependencies: ["MyopiaLab", "CMyopiaAllocCounter", "MyopiaTestSupport"]),
        .testTarget(name: "MyopiaCLITests", dependencies: ["myopia", "MyopiaTestSupport"]),
        .testTarget(name: "MyopiaIntegrationTests", dependencies: ["MyopiaLab", "MyopiaTestSupport"]),
        .testTarget(name: "MyopiaCLIIntegrationTests", dependencies: ["myopia", "MyopiaTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
