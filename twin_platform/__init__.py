"""Twin Platform's domain library: plain Python, usable from a notebook, no Dagster imports."""

__version__ = "0.1.0"
