-- Drop the table of unpaid cache generations.
drop table cache_debts;
