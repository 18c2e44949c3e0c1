import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia generate` with several samples, metrics and JSON, on a checkpoint trained for two steps.
final class GenerateCLITests: XCTestCase {
    func myopia(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try runMyopia(arguments)
        return (r.status, r.stdout, r.stderr)
    }

    /// A byte-level checkpoint with 16 positions, trained for two steps, in a scratch folder.
    func tinyCheckpoint() throws -> (run: String, dir: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-gen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 20).utf8).write(to: corpus)
        let run = dir.appendingPathComponent("run").path
        let train = try myopia(["train", "--data", corpus.path, "--out", run, "--layers", "1", "--heads", "2",
                                "--d-model", "16", "--seq-len", "16", "--batch", "2", "--steps", "2", "--warmup", "1", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        return (run, dir)
    }

    func generateJSON(_ arguments: [String]) throws -> [String: Any] {
        let r = try myopia(["generate"] + arguments + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    }

    func testSamplesJSONHasTheSchemaAndReproduces() throws {
        let (run, _) = try tinyCheckpoint()
        let args = ["--checkpoint", run, "--prompt", "the ", "--samples", "3", "--max-tokens", "20", "--seed", "5"]
        let out = try generateJSON(args)
        XCTAssertEqual(Set(out.keys), ["model", "prompt", "prompt_tokens", "context", "options", "samples", "metrics"])
        XCTAssertEqual(out["prompt"] as? String, "the ")
        XCTAssertEqual(out["prompt_tokens"] as? [Int], [116, 104, 101, 32])
        XCTAssertEqual(out["context"] as? Int, 16)
        let options = try XCTUnwrap(out["options"] as? [String: Any])
        XCTAssertEqual(options["samples"] as? Int, 3)
        XCTAssertEqual(options["seed"] as? Int, 5)
        XCTAssertEqual(options["max_tokens"] as? Int, 20)
        XCTAssertEqual(options["greedy"] as? Bool, false)
        XCTAssertTrue(options["eos_token"] is NSNull, "a byte model has no end-of-text token")
        XCTAssertTrue(options["top_k"] is NSNull)

        let samples = try XCTUnwrap(out["samples"] as? [[String: Any]])
        XCTAssertEqual(samples.count, 3)
        for (i, sample) in samples.enumerated() {
            XCTAssertEqual(sample["index"] as? Int, i)
            XCTAssertEqual(sample["seed"] as? Int, 5 + i)
            let tokens = try XCTUnwrap(sample["tokens"] as? [Int])
            XCTAssertEqual(tokens.count, 20)
            XCTAssertTrue(tokens.allSatisfy { (0..<256).contains($0) })
            XCTAssertEqual(sample["stop_reason"] as? String, "max-tokens")
            XCTAssertNotNil(sample["text"] as? String)
            let loss = try XCTUnwrap(sample["loss"] as? [String: Any])
            XCTAssertEqual(loss["tokens"] as? Int, 20)
            XCTAssertGreaterThan(try XCTUnwrap(loss["loss"] as? Double), 0)
            XCTAssertTrue(sample.keys.contains("loop"))
        }

        let metrics = try XCTUnwrap(out["metrics"] as? [String: Any])
        XCTAssertEqual(metrics["samples"] as? Int, 3)
        XCTAssertEqual(metrics["tokens"] as? Int, 60)
        let distinct = try XCTUnwrap(metrics["distinct"] as? [[String: Any]])
        XCTAssertEqual(distinct.map { $0["n"] as? Int }, [1, 2, 3, 4])
        for (k, d) in distinct.enumerated() {
            XCTAssertEqual(d["ngrams"] as? Int, 3 * (20 - k))
            let pooled = try XCTUnwrap(d["pooled"] as? Double), mean = try XCTUnwrap(d["per_sample_mean"] as? Double)
            XCTAssertTrue(pooled > 0 && pooled <= 1 && mean > 0 && mean <= 1, "\(d)")
        }
        let loopCount = try XCTUnwrap(metrics["loop_count"] as? Int)
        XCTAssertTrue((0...3).contains(loopCount))
        XCTAssertEqual(try XCTUnwrap(metrics["loop_share"] as? Double), Double(loopCount) / 3, accuracy: 1e-12)
        XCTAssertEqual(samples.filter { !($0["loop"] is NSNull) }.count, loopCount)
        let free = try XCTUnwrap(metrics["free_running"] as? [String: Any])
        XCTAssertEqual(free["tokens"] as? Int, 60)
        let freeLoss = try XCTUnwrap(free["loss"] as? Double)
        XCTAssertTrue(freeLoss > 0 && freeLoss < 2 * Foundation.log(256.0), "\(freeLoss)")
        XCTAssertTrue(metrics["teacher_forced"] is NSNull)
        XCTAssertTrue(metrics["reference"] is NSNull)

        // The same seed gives the same samples; sample i is the single sample with seed 5 + i.
        let again = try generateJSON(args)
        XCTAssertEqual(again["samples"] as? NSArray, out["samples"] as? NSArray)
        let second = try generateJSON(["--checkpoint", run, "--prompt", "the ", "--max-tokens", "20", "--seed", "6"])
        let single = try XCTUnwrap((second["samples"] as? [[String: Any]])?.first)
        XCTAssertEqual(single["tokens"] as? [Int], samples[1]["tokens"] as? [Int])
    }

    func testReferenceGivesTeacherForcedLoss() throws {
        let (run, dir) = try tinyCheckpoint()
        let reference = dir.appendingPathComponent("reference.txt")
        try Data("quick brown fox jumps over the lazy dog.".utf8).write(to: reference)
        let out = try generateJSON(["--checkpoint", run, "--prompt", "the ", "--samples", "2", "--max-tokens", "12",
                                    "--reference", reference.path])
        let metrics = try XCTUnwrap(out["metrics"] as? [String: Any])
        let tf = try XCTUnwrap(metrics["teacher_forced"] as? [String: Any])
        // The reference is cut to --max-tokens: the span the samples cover.
        XCTAssertEqual(tf["tokens"] as? Int, 12)
        XCTAssertGreaterThan(try XCTUnwrap(tf["loss"] as? Double), 0)
        XCTAssertEqual(metrics["reference"] as? String, reference.path)

        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let bad = try myopia(["generate", "--checkpoint", run, "--prompt", "x", "--reference", empty.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("empty.txt"), bad.stderr)
    }

    func testStopAtContext() throws {
        let (run, _) = try tinyCheckpoint()
        let out = try generateJSON(["--checkpoint", run, "--prompt", "the ", "--samples", "2", "--max-tokens", "50",
                                    "--stop-at-context"])
        let samples = try XCTUnwrap(out["samples"] as? [[String: Any]])
        for sample in samples {
            XCTAssertEqual(sample["stop_reason"] as? String, "context")
            // Prompt + sample = 16 positions + the one token sampled from the full context.
            XCTAssertEqual((sample["tokens"] as? [Int])?.count, 16 + 1 - 4)
        }
    }

    func testSeveralSamplesStreamThenMetrics() throws {
        let (run, _) = try tinyCheckpoint()
        let r = try myopia(["generate", "--checkpoint", run, "--prompt", "the ", "--samples", "2", "--max-tokens", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("sample 1 of 2, seed 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("sample 2 of 2, seed 2"), r.stdout)
        XCTAssertTrue(r.stdout.contains("stopped: max-tokens"), r.stdout)
        let metrics = try XCTUnwrap(r.stdout.range(of: "metrics over 2 samples (16 tokens)"), r.stdout)
        XCTAssertGreaterThan(metrics.lowerBound, try XCTUnwrap(r.stdout.range(of: "sample 2 of 2")).lowerBound)
        for label in ["distinct-1..4 (pooled)", "ending in a loop", "free-running loss"] {
            XCTAssertTrue(r.stdout.contains(label), label)
        }
        XCTAssertFalse(r.stdout.contains("teacher-forced"), r.stdout)

        let zero = try myopia(["generate", "--checkpoint", run, "--prompt", "x", "--samples", "0"])
        XCTAssertNotEqual(zero.status, 0)
        XCTAssertTrue(zero.stderr.contains("--samples"), zero.stderr)
    }

    /// A model trained with a tokenizer.json generates from a prompt that starts with the BOS its
    /// post-processor adds (Llama 3's); a tokenizer.json in the checkpoint folder is read in place of
    /// the one its config names; `tokenize` reads one too.
    func testTokenizerJSONModelFolder() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizer_json")
        let llama3 = fixtures.appendingPathComponent("llama3/tokenizer.json"), qwen2 = fixtures.appendingPathComponent("qwen2/tokenizer.json")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-gen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "Hello world, the quick brown fox jumps over the lazy dog. ", count: 20).utf8).write(to: corpus)
        let run = dir.appendingPathComponent("run")
        let train = try myopia(["train", "--data", corpus.path, "--out", run.path, "--tokenizer", llama3.path, "--family", "llama",
                                "--layers", "1", "--heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "2", "--steps", "2",
                                "--warmup", "1", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let prompt = ["--prompt", "Hello world", "--max-tokens", "3", "--greedy"]
        XCTAssertEqual(try generateJSON(["--checkpoint", run.path] + prompt)["prompt_tokens"] as? [Int], [500, 39, 478, 365])

        let checkpoint = try XCTUnwrap(try FileManager.default.contentsOfDirectory(at: run, includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasPrefix("checkpoint-") }.max { $0.path < $1.path })
        try FileManager.default.copyItem(at: qwen2, to: checkpoint.appendingPathComponent("tokenizer.json"))
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("qwen2/expected.json")))
            as? [String: Any])
        let hello = try XCTUnwrap((expected["samples"] as? [[String: Any]])?.first { $0["name"] as? String == "hello" })
        XCTAssertEqual(try generateJSON(["--checkpoint", checkpoint.path] + prompt)["prompt_tokens"] as? [Int], hello["ids"] as? [Int])

        let text = dir.appendingPathComponent("hello.txt")
        try Data("Hello world".utf8).write(to: text)
        let tokenized = try myopia(["tokenize", "--tokenizer", llama3.path, "--json", "--add-special-tokens", text.path])
        XCTAssertEqual(tokenized.status, 0, tokenized.stderr)
        XCTAssertEqual(tokenized.stdout, "[500,39,478,365]\n")
    }

    /// --decode-batch 1 (one sample at a time) and the default batch of all give the same samples.
    func testDecodeBatchGivesTheSameSamples() throws {
        let (run, _) = try tinyCheckpoint()
        let args = ["--checkpoint", run, "--prompt", "the ", "--samples", "5", "--max-tokens", "30", "--seed", "3"]
        let together = try generateJSON(args)
        for batch in ["1", "2"] {
            let other = try generateJSON(args + ["--decode-batch", batch])
            XCTAssertEqual(other["samples"] as? NSArray, together["samples"] as? NSArray, "--decode-batch \(batch)")
        }
        let bad = try myopia(["generate", "--checkpoint", run, "--prompt", "x", "--decode-batch", "0"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--decode-batch"), bad.stderr)
    }

    /// --prompts FILE (lines, or JSONL) continues each prompt as --prompt would, all in one batch.
    func testPromptsFileMatchesEachPromptAlone() throws {
        let (run, dir) = try tinyCheckpoint()
        let lines = dir.appendingPathComponent("prompts.txt"), jsonl = dir.appendingPathComponent("prompts.jsonl")
        try Data("the \nquick brown fox \n\nlazy".utf8).write(to: lines)
        try Data("\"the \"\n{\"prompt\": \"quick brown fox \"}\n\"lazy\"\n".utf8).write(to: jsonl)
        let options = ["--samples", "3", "--max-tokens", "25", "--seed", "9"]
        for file in [lines, jsonl] {
            let out = try generateJSON(["--checkpoint", run, "--prompts", file.path] + options)
            XCTAssertEqual(Set(out.keys), ["model", "studies"])
            let studies = try XCTUnwrap(out["studies"] as? [[String: Any]])
            XCTAssertEqual(studies.map { $0["prompt"] as? String }, ["the ", "quick brown fox ", "lazy"])
            for study in studies {
                let alone = try generateJSON(["--checkpoint", run, "--prompt", try XCTUnwrap(study["prompt"] as? String)] + options)
                XCTAssertEqual(study["samples"] as? NSArray, alone["samples"] as? NSArray, "\(file.lastPathComponent)")
                XCTAssertEqual(study["metrics"] as? NSDictionary, alone["metrics"] as? NSDictionary)
            }
        }
        let text = try myopia(["generate", "--checkpoint", run, "--prompts", lines.path, "--max-tokens", "4"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("prompt 3 of 3, sample 1 of 1"), text.stdout)

        let broken = dir.appendingPathComponent("broken.jsonl")
        try Data("\"ok\"\n{\"text\": 1}\n".utf8).write(to: broken)
        let bad = try myopia(["generate", "--checkpoint", run, "--prompts", broken.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("broken.jsonl") && bad.stderr.contains("line 2"), bad.stderr)
        let both = try myopia(["generate", "--checkpoint", run, "--prompts", lines.path, "--prompt", "x"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--prompts"), both.stderr)
    }

    /// `myopia loops` on the tiny checkpoint: one point per repetition count, probabilities and
    /// shares in range, each mean inside its interval.
    func testLoopsReportsTPAndIP() throws {
        let (run, dir) = try tinyCheckpoint()
        let text = dir.appendingPathComponent("sentences.txt")
        try Data("Ab. Cd.\nEf!".utf8).write(to: text)   // 4 bytes each with the leading space: 3 copies fit 16 positions
        let r = try myopia(["loops", "--model", run, "--data", text.path, "--max-repeats", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let loops = try XCTUnwrap(out["loops"] as? [String: Any])
        XCTAssertEqual(loops["sentences"] as? Int, 3)
        let points = try XCTUnwrap(loops["points"] as? [[String: Any]])
        XCTAssertEqual(points.map { $0["n"] as? Int }, [1, 2])
        for p in points {
            let tp = try XCTUnwrap(p["tp"] as? Double), ip = try XCTUnwrap(p["ip"] as? Double)
            let tpi = try XCTUnwrap(p["tp_interval"] as? [Double]), ipi = try XCTUnwrap(p["ip_interval"] as? [Double])
            XCTAssertTrue(tp > 0 && tp < 1 && ip >= 0 && ip <= 1, "\(p)")
            XCTAssertTrue(tpi[0] <= tp && tp <= tpi[1] && ipi[0] <= ip && ip <= ipi[1], "\(p)")
        }
        let none = try myopia(["loops", "--model", run, "--data", text.path, "--max-repeats", "9"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("sentences.txt"), none.stderr)
    }

    /// Several --temperature / --top-k / --top-p values sweep every combination in one run; each
    /// study is the run of its setting alone, and the text output ends with a table of them.
    func testSettingsSweep() throws {
        let (run, _) = try tinyCheckpoint()
        let common = ["--checkpoint", run, "--prompt", "the ", "--samples", "2", "--max-tokens", "15", "--seed", "4"]
        let out = try generateJSON(common + ["--temperature", "0.5", "1.5", "--top-k", "3", "20"])
        let studies = try XCTUnwrap(out["studies"] as? [[String: Any]])
        XCTAssertEqual(studies.count, 4)
        var index = 0
        for t in ["0.5", "1.5"] {
            for k in ["3", "20"] {
                let alone = try generateJSON(common + ["--temperature", t, "--top-k", k])
                let options = try XCTUnwrap(studies[index]["options"] as? [String: Any])
                XCTAssertEqual(options["temperature"] as? Double, Double(t))
                XCTAssertEqual(options["top_k"] as? Int, Int(k))
                XCTAssertEqual(studies[index]["samples"] as? NSArray, alone["samples"] as? NSArray, "t \(t) k \(k)")
                index += 1
            }
        }
        let text = try myopia(["generate"] + common + ["--temperature", "0.5", "1.5"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("sweep: setting | loops") && text.stdout.contains("temperature 1.5"), text.stdout)
        let out2 = try myopia(["generate"] + common + ["--temperature", "0.5", "1.5", "--out", run])
        XCTAssertNotEqual(out2.status, 0)
        XCTAssertTrue(out2.stderr.contains("--out"), out2.stderr)
    }
}
