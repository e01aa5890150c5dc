-- Prompt monitoring: one row per inference request, and user feedback on it.
CREATE TABLE IF NOT EXISTS traces (
    trace_id          uuid PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    api_key_id        text,                  -- a hash prefix of the key, never the key
    route             text NOT NULL,         -- /rag, /v1/chat/completions, ...
    query             text NOT NULL,
    author            text,
    expansions        jsonb NOT NULL DEFAULT '[]'::jsonb,
    retrieved         jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{chunk_id, score, source_url}]
    prompt            text,
    answer            text,
    prompt_tokens     integer,
    completion_tokens integer,
    latencies_ms      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- per stage
    model_version     text,
    error             text
);
CREATE INDEX IF NOT EXISTS traces_created_at ON traces (created_at);

CREATE TABLE IF NOT EXISTS feedback (
    feedback_id  bigserial PRIMARY KEY,
    trace_id     uuid NOT NULL REFERENCES traces (trace_id) ON DELETE CASCADE,
    rating       smallint NOT NULL CHECK (rating IN (-1, 1)),
    correction   text,                       -- the user's better answer: a preference pair
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS feedback_trace ON feedback (trace_id);

-- RAG's full-text arm drops query words found in more than 0.2% of chunks (read from pg_stats, see
-- rag/retriever.py); tracking 10,000 lexemes instead of 1,000 makes that threshold visible.
ALTER TABLE embedded_chunks ALTER COLUMN content_tsv SET STATISTICS 1000;
