-- name: count_tasks :one
-- How many tasks the list's filters match on all pages (X-Total-Count): done %(done)s
-- (null: any), the words %(anchor)s and %(patterns)s (null: no search), as in list_tasks.sql.
select count(*) as total
from tasks
where (%(done)s::boolean is null or done = %(done)s)
    and (%(patterns)s::text[] is null
        or ((title || ' ' || description) ilike %(anchor)s
            and (title || ' ' || description) ilike all (%(patterns)s::text[])))
