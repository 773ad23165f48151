-- Indexes for the list's orders and its search (GET /api/tasks?order=...&q=...).
-- depends: 0004.create-idempotency-keys

-- Each (column, id) index serves order=<column>.asc and .desc alike (scanned backwards for desc):
-- a keyset page is one index range from the cursor's (value, id), whatever page it is. id breaks
-- ties, so the order is total and a cursor names exactly one position. id order needs no index
-- of its own (the primary key), nor does done order: tasks_done_id_idx (0002) is (done, id).
-- A done filter with another order walks the order's index and skips the other half: no
-- (done, column, id) indexes, which would double the cost of every write for a boolean filter.

-- order=title.asc|desc.
create index tasks_title_id_idx on tasks (title, id);
-- order=created_at.asc|desc.
create index tasks_created_at_id_idx on tasks (created_at, id);
-- order=updated_at.asc|desc: every write moves a task here, the index is updated with the row.
create index tasks_updated_at_id_idx on tasks (updated_at, id);

-- q=<words>: "contains every word" is substring matching, case-insensitive, so trigrams
-- (pg_trgm, in PostgreSQL's contrib: Debian's server package and the postgres images ship it,
-- trusted since PostgreSQL 13, so the database owner may create it without superuser).
-- One GIN index over title and description together, because a search's words may be split
-- between them. sql/list_tasks.sql and count_tasks.sql use this very expression.
create extension if not exists pg_trgm;
create index tasks_search_trgm_idx on tasks using gin ((title || ' ' || description) gin_trgm_ops);
