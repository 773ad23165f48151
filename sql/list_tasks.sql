-- name: list_tasks :many
-- A keyset page of tasks after an id, in id order (callers ask for limit + 1 rows to see if more follow).
select
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
from tasks
where id > %(after)s
order by id
limit %(limit)s
