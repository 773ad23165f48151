-- name: create_task :one
-- Insert one task and return it as stored.
insert into tasks (
    title,
    description,
    done
)
values (
    %(title)s,
    %(description)s,
    %(done)s
)
returning
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
