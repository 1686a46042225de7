-- POST /reviews in one round trip. The API used to run it as six statements (the
-- idempotency lookup, BEGIN, the lock, the insert, the key, COMMIT), and on a small box
-- each round trip costs the host and PostgreSQL more CPU than the work itself (measured:
-- ~1.3 ms of host CPU and ~1.8 ms of PostgreSQL CPU per POST). This function does the same
-- steps in the single statement's transaction:
--   1. with an idempotency key already used: nothing is written, the first review's id returns;
--   2. the product's characteristics are locked in id order (concurrent writers of one
--      product queue here instead of deadlocking on the aggregate rows), and ratings of
--      characteristics that are not the product's are refused: their ids return, nothing
--      is written (the API answers 400 naming them);
--   3. the review, its photos, its characteristic ratings and the meta aggregates;
--   4. the key, claimed for this review. A concurrent request with the same key that
--      committed first wins: the claim waits for it, finds the key taken, and everything
--      of step 3 is rolled back (the block's subtransaction); the winner's review id returns.
-- In public, like review_relevance: the import swaps the atelier schema and keeps public.
CREATE FUNCTION public.create_review(
  p_product integer, p_rating smallint, p_summary text, p_body text, p_recommend boolean,
  p_name text, p_email text, p_photos text[], p_characteristics integer[], p_values smallint[],
  p_key text,
  OUT review_id integer, OUT created boolean, OUT foreign_characteristics integer[])
LANGUAGE plpgsql AS $$
DECLARE
  owned integer[];
BEGIN
  created := false;
  IF p_key IS NOT NULL THEN
    SELECT r.review_id INTO review_id FROM atelier.review_requests r WHERE r.idempotency_key = p_key;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;

  SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') INTO owned
  FROM (SELECT id FROM atelier.characteristics WHERE product_id = p_product ORDER BY id FOR UPDATE) c;
  SELECT array_agg(x ORDER BY x) INTO foreign_characteristics FROM unnest(p_characteristics) x WHERE x <> ALL (owned);
  IF foreign_characteristics IS NOT NULL THEN
    RETURN;
  END IF;

  BEGIN
    WITH review AS (
      INSERT INTO atelier.reviews (product_id, rating, summary, body, recommend, reviewer_name, reviewer_email)
      VALUES (p_product, p_rating, p_summary, p_body, p_recommend, p_name, p_email)
      RETURNING id
    ), photos AS (
      INSERT INTO atelier.reviews_photos (review_id, url)
      SELECT review.id, u.url
      FROM review, unnest(p_photos) WITH ORDINALITY AS u(url, n)
      ORDER BY u.n
    ), ratings AS (
      INSERT INTO atelier.characteristic_reviews (characteristic_id, review_id, value)
      SELECT c.id, review.id, c.value
      FROM review, unnest(p_characteristics, p_values) AS c(id, value)
    ), characteristic_totals AS (
      UPDATE atelier.characteristics ch
      SET rating_sum = ch.rating_sum + c.value, rating_count = ch.rating_count + 1
      FROM unnest(p_characteristics, p_values) AS c(id, value)
      WHERE ch.id = c.id
    ), product_totals AS (
      INSERT INTO atelier.product_ratings AS t (product_id, r1, r2, r3, r4, r5, recommended, not_recommended)
      VALUES (p_product, (p_rating = 1)::int, (p_rating = 2)::int, (p_rating = 3)::int,
              (p_rating = 4)::int, (p_rating = 5)::int, p_recommend::int, (NOT p_recommend)::int)
      ON CONFLICT (product_id) DO UPDATE SET
        r1 = t.r1 + excluded.r1, r2 = t.r2 + excluded.r2, r3 = t.r3 + excluded.r3,
        r4 = t.r4 + excluded.r4, r5 = t.r5 + excluded.r5,
        recommended = t.recommended + excluded.recommended,
        not_recommended = t.not_recommended + excluded.not_recommended
    )
    SELECT id INTO review_id FROM review;
    IF p_key IS NOT NULL THEN
      INSERT INTO atelier.review_requests AS k (idempotency_key, review_id) VALUES (p_key, create_review.review_id) ON CONFLICT DO NOTHING;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key taken' USING ERRCODE = 'AT409';
      END IF;
    END IF;
    created := true;
  EXCEPTION WHEN SQLSTATE 'AT409' THEN
    -- Rolled back to the block's start: nothing of this review remains.
    SELECT r.review_id INTO review_id FROM atelier.review_requests r WHERE r.idempotency_key = p_key;
  END;
END
$$;
