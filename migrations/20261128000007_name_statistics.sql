-- Planner statistics for the case-insensitive name lookups (issue #6). The indexes on
-- lower(user_name) and lower(display_name) are partial (live rows only), and Postgres
-- keeps no statistics for the expressions of partial indexes: it assumed 0.5 % of an
-- app's users matched `userName eq "…"` (5 000 rows at 1M users), and with `order by
-- seq limit 100` it then preferred walking the creation-order index to the name index:
-- a scan of every user per Okta lookup (seconds each at 1M users; at 100k the raw-SQL
-- benchmark already hit it). Expression statistics (PostgreSQL 14+) give the planner
-- the real selectivity (one row) once ANALYZE has run, which autovacuum does.
create statistics scim_user_lower_name on (lower(user_name)) from scim_user;
create statistics scim_group_lower_name on (lower(display_name)) from scim_group;
analyze scim_user;
analyze scim_group;
