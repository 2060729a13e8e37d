"""The PT-RAG composition: candidates from the retrieval database, selector, generator."""
