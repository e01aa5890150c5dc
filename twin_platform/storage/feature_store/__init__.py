"""The feature store in Postgres: its records, the pipeline's writes, RAG's searches, stats and checks.

Tables (see `storage/migrations/0002_feature_store.sql`): `cleaned_documents` (the snapshot datasets
are built from), `chunks` (as cut), `embedded_chunks` (chunks + vector + tsvector, HNSW-indexed).
Every function takes an autocommit connection from `storage.postgres.connect` or its pool.
"""
