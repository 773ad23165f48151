-- name: delete_expired_idempotency_keys :execrows
-- Delete at most %(limit)s keys older than %(ttl)s seconds, oldest first
-- (small batches: no long locks).
delete from idempotency_keys
where key in (
    select key
    from idempotency_keys
    where created_at < now() - make_interval(secs => %(ttl)s)
    order by created_at
    limit %(limit)s
)
