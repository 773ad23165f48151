-- name: delete_task :execrows
-- Delete one task if the version matches any of %(versions)s (null: any version); 0 rows when absent or mismatched.
delete from tasks
where id = %(id)s
    and (%(versions)s::integer[] is null or version = any(%(versions)s::integer[]))
