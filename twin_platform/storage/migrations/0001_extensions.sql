-- pgvector for embeddings; pg_trgm for fuzzy matching of titles and URLs.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
