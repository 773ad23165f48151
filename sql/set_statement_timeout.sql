-- name: set_statement_timeout :exec
-- For the rest of the current transaction only (set local): cancel a statement that
-- runs longer than %(timeout)s (e.g. '5000ms'); writes raise the pooled connections' read
-- bound with it.
select set_config('statement_timeout', %(timeout)s, true)
