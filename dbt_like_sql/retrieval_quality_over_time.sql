-- Retrieval quality per author and day: held-out documents found by their own opening prompt.
-- materialized: incremental
-- unique_key: author, day
SELECT author,
       date_trunc('day', evaluated_at) AS day,
       avg(value) FILTER (WHERE metric LIKE 'hit_rate_at_%') AS hit_rate,
       avg(value) FILTER (WHERE metric = 'mrr') AS mrr,
       count(DISTINCT candidate) AS evaluations
FROM {{ source('evaluation', 'eval_results') }}
WHERE model_role = 'retrieval'
{% if is_incremental() %}
  AND evaluated_at >= (SELECT coalesce(max(day), '-infinity') FROM {{ this }})
{% endif %}
GROUP BY author, date_trunc('day', evaluated_at)
