-- name: create_cache_debt :exec
-- Remember a generation bump Redis did not take: %(task_id)s at %(version)s
-- (null task: the list alone).
insert into cache_debts (
    task_id,
    version
)
values (
    %(task_id)s,
    %(version)s
)
