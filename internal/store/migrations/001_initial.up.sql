-- Current stacks: one row per live stack. Removed stacks are deleted; their
-- history stays.
CREATE TABLE stacks (
    id               text PRIMARY KEY,
    machine          text        NOT NULL,
    state            text        NOT NULL,
    previous_state   text        NOT NULL DEFAULT '',
    metadata         jsonb       NOT NULL DEFAULT '{}',
    tasks            jsonb       NOT NULL DEFAULT '[]',
    version          bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    state_entered_at timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Everything that happened to a stack, kept after the stack is removed.
CREATE TABLE history (
    id          bigserial PRIMARY KEY,
    stack_id    text        NOT NULL,
    machine     text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL,
    kind        text        NOT NULL,
    event       text        NOT NULL DEFAULT '',
    from_state  text        NOT NULL DEFAULT '',
    to_state    text        NOT NULL DEFAULT '',
    task        text        NOT NULL DEFAULT '',
    task_run_id text        NOT NULL DEFAULT '',
    duration_ms bigint,
    reason      text        NOT NULL DEFAULT '',
    detail      jsonb,
    message_id  text        NOT NULL DEFAULT ''
);
CREATE INDEX history_stack_idx ON history (stack_id, id);

-- Task messages written in the same transaction as the change that caused
-- them; a row is deleted once the message is on the queue.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    stack_id      text        NOT NULL,
    body          text        NOT NULL,
    delay_seconds integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL
);
CREATE INDEX outbox_stack_idx ON outbox (stack_id, id);
CREATE INDEX outbox_created_idx ON outbox (created_at);

-- Keys of events already applied (eventId, or the SQS message id), so a
-- redelivery changes nothing.
CREATE TABLE processed_events (
    key          text PRIMARY KEY,
    stack_id     text        NOT NULL,
    processed_at timestamptz NOT NULL
);
CREATE INDEX processed_events_at_idx ON processed_events (processed_at);

-- Every rejected message, including those that name no stack (malformed JSON).
CREATE TABLE rejections (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    message_id text        NOT NULL DEFAULT '',
    stack_id   text        NOT NULL DEFAULT '',
    event      text        NOT NULL DEFAULT '',
    reason     text        NOT NULL,
    body       text        NOT NULL DEFAULT ''
);
CREATE INDEX rejections_stack_idx ON rejections (stack_id, id);
