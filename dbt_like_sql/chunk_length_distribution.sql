-- Chunk lengths in 32-token buckets per category: how full chunks are against the model's limit.
-- materialized: view
SELECT category,
       (token_count / 32) * 32 AS tokens_from,
       (token_count / 32) * 32 + 31 AS tokens_to,
       count(*) AS chunks
FROM {{ source('feature_store', 'chunks') }}
GROUP BY category, token_count / 32
ORDER BY category, tokens_from
