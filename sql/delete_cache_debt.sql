-- name: delete_cache_debt :execrows
-- Forget a generation bump once Redis took it.
delete from cache_debts
where id = %(id)s
