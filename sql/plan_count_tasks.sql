-- name: plan_count_tasks :one
-- The planner's estimate of how many tasks the list's filters match (count=planned),
-- from the plan of count_tasks.sql's filter: done %(done)s (null: any), the words %(anchor)s
-- and %(patterns)s (null: no search). One EXPLAIN, no row is read; the "Plan Rows" of the
-- plan's top node.
explain (format json)
select id
from tasks
where (%(done)s::boolean is null or done = %(done)s)
    and (%(patterns)s::text[] is null
        or ((title || ' ' || description) ilike %(anchor)s
            and (title || ' ' || description) ilike all (%(patterns)s::text[])))
