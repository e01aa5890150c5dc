-- Keep each chunk's row whole in its heap page. A row is ~2.9 KB at 384 dimensions, over the default
-- 2 KB at which Postgres moves the embedding to the TOAST table; every search then fetched each hit's
-- vector from there to compute its similarity (about 1 ms for 20 hits, measured in
-- benchmarks/results/api.md). Rows written before this migration stay toasted until they are
-- rewritten (re-embedding them, or `VACUUM FULL embedded_chunks`).
ALTER TABLE embedded_chunks SET (toast_tuple_target = 8160);
