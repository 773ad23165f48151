-- name: delete_task :one
-- Delete one task if the version matches any of %(versions)s (null: any version);
-- its last version, or no row when absent or mismatched.
delete from tasks
where id = %(id)s
    and (%(versions)s::integer[] is null or version = any(%(versions)s::integer[]))
returning
    id,
    version
