-- Per author and category: how much writing the twin has, and how it was cut and embedded.
-- materialized: table
WITH docs AS (
    SELECT author, category,
           count(*) AS documents,
           count(*) FILTER (WHERE status IN ('ok', 'truncated')) AS documents_with_text,
           count(*) FILTER (WHERE status IN ('empty', 'non_text')) AS documents_without_text,
           count(*) FILTER (WHERE language IS NOT NULL AND language NOT IN ('en', 'und')) AS non_english,
           sum(length(content)) AS characters,
           min(published_at) AS first_published,
           max(published_at) AS last_published
    FROM {{ source('feature_store', 'cleaned_documents') }} GROUP BY author, category
), cut AS (
    SELECT author, category, count(*) AS chunks, sum(token_count) AS tokens,
           round(avg(token_count), 1) AS mean_tokens_per_chunk, max(token_count) AS max_tokens_per_chunk
    FROM {{ source('feature_store', 'chunks') }} GROUP BY author, category
), embedded AS (
    SELECT author, category, count(*) AS embedded_chunks
    FROM {{ source('feature_store', 'embedded_chunks') }} GROUP BY author, category
)
SELECT d.author, d.category, d.documents, d.documents_with_text, d.documents_without_text, d.non_english,
       d.characters, coalesce(c.chunks, 0) AS chunks, coalesce(c.tokens, 0) AS tokens,
       c.mean_tokens_per_chunk, c.max_tokens_per_chunk, coalesce(e.embedded_chunks, 0) AS embedded_chunks,
       d.first_published, d.last_published
FROM docs d
LEFT JOIN cut c USING (author, category)
LEFT JOIN embedded e USING (author, category)
ORDER BY d.author, d.category
