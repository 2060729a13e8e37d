"""Data layer: AnnData loading, gene embeddings, splits, the retrieval database, synthesis."""
