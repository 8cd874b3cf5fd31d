-- The sweep prunes rejections older than their retention in bounded batches (store.PruneRejections);
-- this index lets each batch find the oldest rows without scanning the table.
-- (processed_events already has processed_events_at_idx.)
CREATE INDEX IF NOT EXISTS rejections_at_idx ON rejections (at, id);
