-- The API per day and route: requests, latency percentiles, error rate and feedback rate.
-- materialized: incremental
-- unique_key: day, route
SELECT date_trunc('day', t.created_at) AS day,
       t.route,
       count(*) AS requests,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (t.latencies_ms->>'total')::float) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (t.latencies_ms->>'total')::float) AS p95_ms,
       avg((t.error IS NOT NULL)::int) AS error_rate,
       avg((EXISTS (SELECT 1 FROM {{ source('monitoring', 'feedback') }} f WHERE f.trace_id = t.trace_id))::int)
           AS feedback_rate
FROM {{ source('monitoring', 'traces') }} t
{% if is_incremental() %}
WHERE t.created_at >= (SELECT coalesce(max(day), '-infinity') FROM {{ this }})
{% endif %}
GROUP BY date_trunc('day', t.created_at), t.route
