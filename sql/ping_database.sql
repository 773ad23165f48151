-- name: ping_database :one
-- A round trip to the server for the health check.
select 1 as ok
