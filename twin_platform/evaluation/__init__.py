"""Evaluation of a twin against its author's held-out writing: judge-free metrics, an optional LLM
judge, and the report and gate that decide promotion."""
