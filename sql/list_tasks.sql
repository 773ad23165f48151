-- name: list_tasks :many
-- A keyset page in {column} {direction} order, ties by id alike: rows past
-- (%(after_value)s, %(after_id)s) (null: from the start), of done %(done)s (null: any), holding
-- the words %(anchor)s and %(patterns)s (null: no search); callers ask for limit + 1 rows to
-- see if more follow.
-- The column, the direction and the comparison (> for asc, < for desc) are identifier slots
-- that svc/store.py fills from the order whitelist through psycopg.sql. The search expression
-- is the one tasks_search_trgm_idx (migration 0005) indexes. "ilike all" cannot use a GIN
-- index, so the longest word (the anchor) is also asked alone: the index finds its rows, the
-- rest filter.
select
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
from tasks
where (%(after_id)s::bigint is null
        or ({column}, id) {past} (%(after_value)s, %(after_id)s))
    and (%(done)s::boolean is null or done = %(done)s)
    and (%(patterns)s::text[] is null
        or ((title || ' ' || description) ilike %(anchor)s
            and (title || ' ' || description) ilike all (%(patterns)s::text[])))
order by
    {column} {direction},
    id {direction}
limit %(limit)s
