-- name: get_task :one
-- One task by id, or no row.
select
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
from tasks
where id = %(id)s
