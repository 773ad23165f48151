-- Drop the orders' and the search's indexes, then pg_trgm (nothing else here uses it).
drop index tasks_search_trgm_idx;
drop extension if exists pg_trgm;
drop index tasks_updated_at_id_idx;
drop index tasks_created_at_id_idx;
drop index tasks_title_id_idx;
