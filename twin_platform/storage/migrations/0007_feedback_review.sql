-- User corrections enter preference datasets only after a person approved them (issue 17, item 4).
-- A row keeps the author the server recorded on the answer's trace (never the client's word) and the
-- key that sent it (per-key limits); `status` is pending (a correction of a bad answer, awaiting
-- review), approved, rejected, or ignored (a rating, or a correction no dataset may use).
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS author text;
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS api_key_id text;
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'ignored';
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS reviewed_by text;
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS reviewed_at timestamptz;

-- Rows from before review existed were never reviewed: their usable corrections wait for it.
UPDATE feedback f
SET author = t.author,
    api_key_id = t.api_key_id,
    status = CASE
        WHEN f.rating < 0 AND btrim(coalesce(f.correction, '')) <> '' AND t.author IS NOT NULL
             AND btrim(coalesce(t.answer, '')) <> '' AND t.error IS NULL
        THEN 'pending' ELSE 'ignored' END
FROM traces t
WHERE t.trace_id = f.trace_id;

ALTER TABLE feedback DROP CONSTRAINT IF EXISTS feedback_status_valid;
ALTER TABLE feedback ADD CONSTRAINT feedback_status_valid
    CHECK (status IN ('pending', 'approved', 'rejected', 'ignored'));
CREATE INDEX IF NOT EXISTS feedback_author_status ON feedback (author, status);
CREATE INDEX IF NOT EXISTS feedback_key_pending ON feedback (api_key_id) WHERE status = 'pending';
