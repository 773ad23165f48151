-- name: count_tasks_upto :one
-- How many tasks the list's filters match, counting no further than %(upto)s
-- (count=estimated: an exact count below it costs at most that many rows): done %(done)s
-- (null: any), the words %(anchor)s and %(patterns)s (null: no search), as in count_tasks.sql.
select count(*) as total
from (
    select
    from tasks
    where (%(done)s::boolean is null or done = %(done)s)
        and (%(patterns)s::text[] is null
            or ((title || ' ' || description) ilike %(anchor)s
                and (title || ' ' || description) ilike all (%(patterns)s::text[])))
    limit %(upto)s
) as matching
