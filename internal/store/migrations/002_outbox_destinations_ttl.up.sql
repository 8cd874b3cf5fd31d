-- The outbox now feeds three places: the task queue ('task'), the event
-- queue ('event', for time-to-live events) and the notification topic
-- ('notification').
ALTER TABLE outbox ADD COLUMN destination text NOT NULL DEFAULT 'task';

-- The stack version whose time-to-live event was already enqueued, so one
-- idle visit of a state sends its event once.
ALTER TABLE stacks ADD COLUMN ttl_sent_version bigint;

-- The time-to-live sweep looks for idle stacks of one machine and state.
CREATE INDEX stacks_idle_idx ON stacks (machine, state, last_activity_at);
