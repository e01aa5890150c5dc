"""Training data of the twin: instruction and preference datasets built from the cleaned snapshot.

`extracts` cuts the author's documents, `generation` asks the LLM (through litellm, cached and
validated), `curation` filters, scrubs, deduplicates, splits and decontaminates, `artifact` writes the
versioned folder, `card` describes it, `checks` verifies it, and `build` ties the steps together.
"""
