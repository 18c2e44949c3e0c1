import Foundation
import Myopia

/// Offline English-like text for when no package registry can be reached: seeded sentences from a
/// small grammar, enough structure for a byte model to learn words and spacing.
public enum SyntheticText {
    static let subjects = ["the king", "a servant", "my lord", "the queen", "our friend", "this man", "the people", "a soldier"]
    static let verbs = ["speaks of", "looks upon", "remembers", "forgets", "loves", "fears", "waits for", "calls"]
    static let objects = ["the crown", "his brother", "the night", "a letter", "the city", "her father", "the sea", "an old song"]
    static let endings = [".", "!", "?", ", and then is silent.", " in the morning."]

    /// The name datasets and summaries give this text.
    public static let sourceName = "synthetic-text"

    public static func generate(bytes: Int, seed: UInt64) -> String {
        var rng = SeededGenerator(seed: seed)
        var out = ""
        while out.utf8.count < bytes {
            var s = subjects[rng.nextInt(below: subjects.count)] + " " + verbs[rng.nextInt(below: verbs.count)] + " "
                + objects[rng.nextInt(below: objects.count)] + endings[rng.nextInt(below: endings.count)]
            s = s.prefix(1).uppercased() + s.dropFirst()
            out += s + (rng.nextInt(below: 4) == 0 ? "\n" : " ")
        }
        return out
    }
}
