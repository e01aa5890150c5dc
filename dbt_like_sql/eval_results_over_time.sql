-- Per author and evaluation: the candidate against base and production, one row per evaluation.
-- materialized: view
SELECT author,
       candidate,
       min(evaluated_at) AS evaluated_at,
       max(value) FILTER (WHERE model_role = 'base' AND metric = 'perplexity') AS base_perplexity,
       max(value) FILTER (WHERE model_role = 'production' AND metric = 'perplexity') AS production_perplexity,
       max(value) FILTER (WHERE model_role = 'candidate' AND metric = 'perplexity') AS candidate_perplexity,
       max(value) FILTER (WHERE model_role = 'base' AND metric = 'style_similarity') AS base_style,
       max(value) FILTER (WHERE model_role = 'candidate' AND metric = 'style_similarity') AS candidate_style,
       max(value) FILTER (WHERE metric = 'dpo_reward_accuracy') AS dpo_reward_accuracy,
       max(value) FILTER (WHERE model_role = 'candidate' AND metric = 'tokens_per_second') AS candidate_tokens_per_second
FROM {{ source('evaluation', 'eval_results') }}
GROUP BY author, candidate
ORDER BY author, evaluated_at
