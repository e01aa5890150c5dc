"""Model files: the base LLM the platform fine-tunes."""
