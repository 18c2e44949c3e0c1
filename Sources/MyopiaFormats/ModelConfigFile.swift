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
        return try encoder.encode(self)
    }
}
