-- name: lock_idempotency_key :one
-- Take the key's lock for this transaction if no other request holds it
-- (locked false: one is in flight).
select pg_try_advisory_xact_lock(hashtextextended(%(key)s, 0)) as locked
