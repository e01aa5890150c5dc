"""quillstack: a small toolkit for boring data pipelines."""

__version__ = "0.4.1"
