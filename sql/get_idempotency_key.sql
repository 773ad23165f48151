-- name: get_idempotency_key :one
-- The stored response of a key younger than %(ttl)s seconds, or no row.
select
    fingerprint,
    status,
    headers,
    body
from idempotency_keys
where key = %(key)s
    and created_at > now() - make_interval(secs => %(ttl)s)
