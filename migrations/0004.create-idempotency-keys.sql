-- Responses to requests sent with an Idempotency-Key, stored in the transaction of their write,
-- so that a retry is answered from here (and never writes twice) whatever happens to Redis.
-- depends: 0003.create-cache-debts
create table idempotency_keys (
    key text primary key,
    fingerprint bytea not null,
    status smallint not null,
    headers jsonb not null,
    body bytea not null,
    created_at timestamptz not null default now()
);

-- The janitor deletes expired keys oldest first.
create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
