-- Per author: the share of chunks that have a vector, with which model, and when vectors were last written.
-- materialized: table
SELECT s.author,
       sum(s.chunks) AS chunks,
       sum(s.embedded_chunks) AS embedded_chunks,
       round(100.0 * sum(s.embedded_chunks) / nullif(sum(s.chunks), 0), 1) AS coverage_pct,
       (SELECT string_agg(DISTINCT e.embedding_model, ', ')
        FROM {{ source('feature_store', 'embedded_chunks') }} e WHERE e.author = s.author) AS models,
       (SELECT max(e.created_at)
        FROM {{ source('feature_store', 'embedded_chunks') }} e WHERE e.author = s.author) AS last_embedded_at
FROM {{ ref('author_corpus_stats') }} s
GROUP BY s.author
ORDER BY s.author
