-- Explanations are stored as `json`, not `jsonb`: the exact canonical text the engine hashed is
-- kept byte for byte (an auditor can recompute explanation_hash from the stored document), and
-- writing skips jsonb's re-encoding of large documents. Nothing queries inside them in SQL.
alter table eligibility_results alter column explanation type json using explanation::text::json;
alter table eligibility_releases alter column explanation type json using explanation::text::json;
