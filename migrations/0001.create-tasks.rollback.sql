-- Drop the tasks table.
drop table tasks;
