import Foundation

/// Baselines a trained model must beat.
public enum TokenStatistics {
    /// Cross-entropy (nats per token) on `eval` of the unigram distribution estimated on `train`
    /// (add-one smoothing so unseen tokens cost a finite amount). This is the unigram entropy of
    /// the data when train and eval come from the same text.
    public static func unigramCrossEntropy(train: [Int32], eval: [Int32], vocabSize v: Int) -> Double {
        var counts = [Double](repeating: 1, count: v)
        for t in train { counts[Int(t)] += 1 }
        let total = counts.reduce(0, +)
        var loss = 0.0
        for t in eval { loss -= Foundation.log(counts[Int(t)] / total) }
        return eval.isEmpty ? .nan : loss / Double(eval.count)
    }
}
