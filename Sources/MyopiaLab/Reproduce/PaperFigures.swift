import Foundation
import Myopia

/// The published figures `myopia reproduce wu2024` compares against: one data file in the repo
/// (Sources/MyopiaLab/Reproduce/wu2024.json, embedded in the binary), each figure with the model,
/// data and scale it was measured at and where in the paper it comes from.
public struct PaperFigures: Codable, Sendable {
    public struct Paper: Codable, Sendable {
        public var title: String
        public var authors: String
        public var venue: String
        public var arxiv: String
        public var code: String
    }

    /// The scale of a measurement: parameters and what the model saw.
    public struct Scale: Codable, Equatable, Sendable {
        public var parameters: Int
        public var sequences: Int?
        public var tokens: Int?
    }

    public struct Figure: Codable, Sendable {
        public var id: String
        public var what: String
        public var value: Double
        /// Other values sources give for the same figure.
        public var alternatives: [Double]?
        public var unit: String
        public var model: String
        public var data: String
        public var scale: Scale
        /// Section, table or figure of the paper (and any disagreement between sources).
        public var source: String
    }

    public var paper: Paper
    /// Whether every figure has been compared with the paper's own text.
    public var checkedAgainstPaperText: Bool
    public var provenance: String
    public var figures: [Figure]

    enum CodingKeys: String, CodingKey {
        case paper, provenance, figures
        case checkedAgainstPaperText = "checked_against_paper_text"
    }

    public func figure(_ id: String) -> Figure? { figures.first { $0.id == id } }

    /// Wu, Morris & Levine 2024, from the embedded data file.
    public static func wu2024() throws -> PaperFigures {
        let data = Data(PackageResources.wu2024_json)
        do {
            return try JSONDecoder().decode(PaperFigures.self, from: data)
        } catch {
            throw InputError.invalidValue(file: "wu2024.json", field: "figures", expected: "the paper-figures format",
                                           found: "\(error)")
        }
    }
}
