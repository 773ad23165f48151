-- Serve GET /api/tasks?done=... pages from an index in id order.
-- depends: 0001.create-tasks
create index tasks_done_id_idx on tasks (done, id);
