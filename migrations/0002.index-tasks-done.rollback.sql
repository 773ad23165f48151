-- Drop the done filter's index.
drop index tasks_done_id_idx;
