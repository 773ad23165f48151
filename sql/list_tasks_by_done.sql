-- name: list_tasks_by_done :many
-- A keyset page of tasks with the given done flag, in id order (served by tasks_done_id_idx).
select
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
from tasks
where done = %(done)s
    and id > %(after)s
order by id
limit %(limit)s
