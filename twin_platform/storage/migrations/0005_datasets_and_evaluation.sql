-- Every number an evaluation measured, so models can be compared over time (dbt_like_sql reads it).
CREATE TABLE IF NOT EXISTS eval_results (
    result_id     bigserial PRIMARY KEY,
    evaluated_at  timestamptz NOT NULL DEFAULT now(),
    author        text NOT NULL,
    candidate     text NOT NULL,             -- registry name:version of the model evaluated
    model_role    text NOT NULL,             -- base, sft, candidate, production, retrieval
    model         text,                      -- that model's registry name:version or path
    metric        text NOT NULL,
    value         double precision NOT NULL,
    run_id        text                       -- the Dagster run, when Dagster ran it
);
CREATE INDEX IF NOT EXISTS eval_results_author_time ON eval_results (author, evaluated_at);

-- Every dataset version built, with its counts (the files hold the rows; this is for SQL models).
CREATE TABLE IF NOT EXISTS dataset_versions (
    kind        text NOT NULL,                 -- instruction or preference
    author      text NOT NULL,
    version     text NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now(),
    train_rows  integer NOT NULL,
    test_rows   integer NOT NULL,
    generator   text NOT NULL,
    PRIMARY KEY (kind, author, version)
);
