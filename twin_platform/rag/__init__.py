"""Retrieval-augmented generation: every step a small function, composed by `pipeline.RagPipeline`.

self_query (filters from the query) -> expansion (n queries) -> retriever (hybrid pgvector + full-text,
reciprocal-rank fusion, filters, de-duplication) -> rerank -> context (token budget) -> generation.
"""
