-- name: can_create_tables :one
-- Whether the current user may create tables in schema public, as migrations do.
select
    current_user as user_name,
    has_schema_privilege('public', 'create') as allowed
