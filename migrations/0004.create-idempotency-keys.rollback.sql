-- Drop the stored responses of idempotent requests.
drop table idempotency_keys;
