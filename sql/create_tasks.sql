-- name: create_tasks :many
-- Insert one task per element of the arrays %(titles)s, %(descriptions)s, %(dones)s
-- (equal lengths), in one statement; returns them in array order, ids ascending.
with created as (
    insert into tasks (
        title,
        description,
        done
    )
    select
        title,
        description,
        done
    from unnest(%(titles)s::text[], %(descriptions)s::text[], %(dones)s::boolean[])
        with ordinality as t (title, description, done, n)
    order by n
    returning
        id,
        title,
        description,
        done,
        created_at,
        updated_at,
        version
)
select
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
from created
order by id
