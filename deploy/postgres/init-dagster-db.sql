-- Dagster's run/event storage lives in its own database beside the feature store.
CREATE DATABASE dagster;
