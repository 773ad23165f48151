-- name: list_cache_debts :many
-- The oldest unpaid generation bumps, at most %(limit)s.
select
    id,
    task_id,
    version
from cache_debts
order by id
limit %(limit)s
