-- name: create_idempotency_key :exec
-- Store the response to a key (replacing an expired one), in the transaction of its write.
insert into idempotency_keys (
    key,
    fingerprint,
    status,
    headers,
    body
)
values (
    %(key)s,
    %(fingerprint)s,
    %(status)s,
    %(headers)s,
    %(body)s
)
on conflict (key) do update
set
    fingerprint = excluded.fingerprint,
    status = excluded.status,
    headers = excluded.headers,
    body = excluded.body,
    created_at = now()
