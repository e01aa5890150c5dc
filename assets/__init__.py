"""The asset graph, one module per stage. `definitions.py` loads every module listed here."""

from assets import datasets, features, platform, raw_documents

ASSET_MODULES = [platform, raw_documents, features, datasets]
