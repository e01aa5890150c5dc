"""Clients for the two stores: the Postgres feature store and the MongoDB-protocol warehouse."""
