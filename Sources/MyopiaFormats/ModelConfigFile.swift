// config.json on disk: ModelConfig is a value in MyopiaModel; reading and writing the file is here.

import Foundation
import MyopiaSupport
import MyopiaModel

extension ModelConfig {
    /// Reads and validates `config.json`, turning every decoding failure into a typed error that names
    /// the file and the field.
    public static func load(from url: URL) throws -> ModelConfig {
        let file = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let error as DecodingError {
            throw InputError.decoding(error, data: data, file: file)
        } catch let error as InputError {
            throw error.filed(under: file)   // raised inside the decoder, which names "config.json"
        } catch {
            throw InputError.invalidHeader(file: file, field: "(json)", reason: "\(error)")
        }
        try config.validate(file: file)
        return config
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Self.floatFieldsWithPoint(try encoder.encode(self))
    }

    /// Keys transformers types as float and refuses as an integer (Gemma2Config's soft-caps).
    static let floatOnlyKeys = ["attn_logit_softcapping", "final_logit_softcapping"]

    /// JSONEncoder writes 3.0 as `3`; a float-only key's whole number gets its `.0` back.
    static func floatFieldsWithPoint(_ data: Data) -> Data {
        var text = String(decoding: data, as: UTF8.self)
        for key in floatOnlyKeys {
            guard let keyRange = text.range(of: "\"\(key)\" : ") else { continue }
            let digits = text[keyRange.upperBound...].prefix { $0 == "-" || $0.isNumber }
            let end = text.index(keyRange.upperBound, offsetBy: digits.count)
            guard !digits.isEmpty, end < text.endIndex, text[end] == "," || text[end] == "\n" else { continue }
            text.insert(contentsOf: ".0", at: end)
        }
        return Data(text.utf8)
    }
}
