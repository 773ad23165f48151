-- Create the tasks table; the API's limits are enforced here too.
-- depends:
create table tasks (
    id bigint generated always as identity primary key,
    title text not null
        check (char_length(title) between 1 and 200 and btrim(title) <> ''),
    description text not null default ''
        check (char_length(description) <= 10000),
    done boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    version integer not null default 1
        check (version >= 1)
);
