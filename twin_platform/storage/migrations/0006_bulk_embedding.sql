-- The embedding stage lists an author's chunks without a vector in (token_count, chunk_id) order,
-- a page at a time (keyset pagination: constant memory and cost per page at 1M chunks). This index
-- serves those pages and every other author filter on chunks, so the (author) index goes.
-- The HNSW index of embedded_chunks is kept by code from here on (storage/feature_store/hnsw.py):
-- built CONCURRENTLY with memory sized to its graph, after a bulk load, or when its definition
-- (TWIN_HNSW_M, TWIN_HNSW_EF_CONSTRUCTION, TWIN_HNSW_STORAGE) changes.
CREATE INDEX IF NOT EXISTS chunks_author_length ON chunks (author, token_count, chunk_id);
DROP INDEX IF EXISTS chunks_author;
