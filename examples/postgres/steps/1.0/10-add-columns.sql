-- An order gets a status (a column with a default: PostgreSQL 11+ adds it
-- without rewriting the table) and a total, filled in by 1.1.
ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'open';
ALTER TABLE orders ADD COLUMN total_cents bigint;
