-- The logical feature store: the cleaned snapshot (for datasets), chunks, and embedded chunks (for RAG).
CREATE TABLE IF NOT EXISTS cleaned_documents (
    document_id     text PRIMARY KEY,        -- sha256 of (category, author, url)
    author          text NOT NULL,
    category        text NOT NULL CHECK (category IN ('articles', 'posts', 'repositories')),
    platform        text NOT NULL,
    url             text NOT NULL,
    title           text,
    content         text NOT NULL,           -- '' when status is 'empty' or 'non_text'
    content_hash    text NOT NULL,           -- hash of the raw content it was cleaned from
    language        text,
    published_at    timestamptz,
    cleaned_at      timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'truncated', 'empty', 'non_text')),
    cleaner_version text NOT NULL DEFAULT '',
    chunks_version  text,                    -- chunker fingerprint its chunks were built with; NULL: to chunk
    UNIQUE (author, category, url)
);
CREATE INDEX IF NOT EXISTS cleaned_documents_author_category ON cleaned_documents (author, category);

-- Chunks as the chunker cut them; embedded_chunks adds the vector. Rows of a document are replaced
-- together, in one transaction, whenever the document or the chunker changes.
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id     text PRIMARY KEY,           -- sha256 of (document_id, chunk text)
    document_id  text NOT NULL REFERENCES cleaned_documents (document_id) ON DELETE CASCADE,
    author       text NOT NULL,
    category     text NOT NULL,
    source_url   text NOT NULL,
    chunk_index  integer NOT NULL,
    content      text NOT NULL,
    token_count  integer NOT NULL,           -- with the model's special tokens
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_author ON chunks (author);

CREATE TABLE IF NOT EXISTS embedded_chunks (
    chunk_id        text PRIMARY KEY,        -- sha256 of (document_id, chunk text)
    document_id     text NOT NULL REFERENCES cleaned_documents (document_id) ON DELETE CASCADE,
    author          text NOT NULL,
    category        text NOT NULL,
    source_url      text NOT NULL,
    chunk_index     integer NOT NULL,
    content         text NOT NULL,
    token_count     integer NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding       vector(384) NOT NULL,
    embedding_model text NOT NULL,
    content_tsv     tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS embedded_chunks_document ON embedded_chunks (document_id);
CREATE INDEX IF NOT EXISTS embedded_chunks_author_category ON embedded_chunks (author, category);
CREATE INDEX IF NOT EXISTS embedded_chunks_tsv ON embedded_chunks USING gin (content_tsv);
-- m = 16, ef_construction = 128, with ef_search = 40 per query (TWIN_HNSW_EF_SEARCH): recall@10 0.994 at
-- p50 4.1 ms on 100,000 vectors; see the sweep in benchmarks/results/features.md.
CREATE INDEX IF NOT EXISTS embedded_chunks_hnsw ON embedded_chunks
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);
