"""Partitions shared across the graph: one partition per author, added as authors are registered."""

import dagster as dg

authors = dg.DynamicPartitionsDefinition(name="authors")
