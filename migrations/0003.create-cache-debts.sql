-- Cache generations a write could not bump in Redis: kept until a worker bumps them, so an
-- outage of Redis can never let it serve what an acknowledged write replaced.
-- depends: 0002.index-tasks-done
create table cache_debts (
    id bigint generated always as identity primary key,
    task_id bigint,
    version integer,
    created_at timestamptz not null default now()
);
