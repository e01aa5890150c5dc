"""Partitions shared across the graph: one partition per author, added as authors are registered."""

from collections.abc import Iterable

import dagster as dg

authors = dg.DynamicPartitionsDefinition(name="authors")


def add_authors(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """Give every author a partition: the one registration path of the CLI, the job and the sensor.

    Returns the names that were new to the instance."""
    missing = sorted({n for n in names if not instance.has_dynamic_partition(authors.name, n)})
    if missing:
        instance.add_dynamic_partitions(authors.name, missing)
    return missing
