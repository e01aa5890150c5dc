-- Per author and dataset kind: versions built, the latest one's rows, and how rows grew.
-- materialized: view
SELECT author,
       kind,
       count(*) AS versions,
       (array_agg(version ORDER BY built_at DESC))[1] AS latest_version,
       (array_agg(train_rows ORDER BY built_at DESC))[1] AS latest_train_rows,
       (array_agg(test_rows ORDER BY built_at DESC))[1] AS latest_test_rows,
       (array_agg(generator ORDER BY built_at DESC))[1] AS latest_generator,
       max(built_at) AS last_built_at
FROM {{ source('datasets', 'dataset_versions') }}
GROUP BY author, kind
ORDER BY author, kind
