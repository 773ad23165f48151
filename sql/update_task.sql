-- name: update_task :one
-- Set the given fields (null keeps the current value) if the version matches any of
-- %(versions)s (null: any version); bumps version.
update tasks
set
    title = coalesce(%(title)s, title),
    description = coalesce(%(description)s, description),
    done = coalesce(%(done)s, done),
    updated_at = now(),
    version = version + 1
where id = %(id)s
    and (%(versions)s::integer[] is null or version = any(%(versions)s::integer[]))
returning
    id,
    title,
    description,
    done,
    created_at,
    updated_at,
    version
