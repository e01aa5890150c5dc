"""Collection: sources of an author (URLs, exports, repositories) -> raw documents in the warehouse."""
