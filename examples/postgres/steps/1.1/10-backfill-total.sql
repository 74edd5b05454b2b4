-- The total of every order, 50,000 orders per transaction; the cursor is
-- committed with each batch, so a kill loses at most one batch.
-- rehearse:batch table=orders key=id size=50000
UPDATE orders SET total_cents = qty::bigint * price_cents WHERE id BETWEEN :lo AND :hi;
