-- Two index entries fewer for every event written and one fewer for every event published.
-- `event_id` is a UUID v7 made by the encoder for each new row and nothing looks a row up by it,
-- so its unique index only cost an entry at the insert and another at the relay's mark (that
-- update is not HOT: `published_at` is in the unpublished rows' index predicate). Pruning walks
-- the oldest rows by primary key instead of `idx_outbox_published_at`, which cost an entry at
-- every mark.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
DROP INDEX idx_outbox_published_at;
