-- Chunk lengths in 32-token buckets per category: shows how full chunks are against the model's limit.
-- depends_on: chunks
SELECT category,
       (token_count / 32) * 32 AS tokens_from,
       (token_count / 32) * 32 + 31 AS tokens_to,
       count(*) AS chunks
FROM chunks
GROUP BY category, token_count / 32
ORDER BY category, tokens_from
