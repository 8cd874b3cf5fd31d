-- Outbox messages that can never be sent (SQS refuses them as they are, e.g. too large) are
-- moved here with the reason, instead of being re-sent by every sweep forever. An alarm watches
-- the OutboxParked metric; an operator reads them here (the stack's history says so too).
CREATE TABLE parked_outbox (
    id            bigint      PRIMARY KEY, -- the outbox row's id
    stack_id      text        NOT NULL,
    destination   text        NOT NULL,
    body          text        NOT NULL,
    delay_seconds integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    parked_at     timestamptz NOT NULL,
    reason        text        NOT NULL
);
CREATE INDEX parked_outbox_stack_idx ON parked_outbox (stack_id, id);
