-- Two defects found by an outside review (issue 19):
--
-- 1. An Idempotency-Key was looked up by value only: a second POST with the same key and a
--    different body or product got 201 with the first review's id (Idempotent-Replayed) and
--    its own review was silently dropped. The key now remembers a fingerprint of the request
--    that first used it; a reuse with another request raises AT422, which the API answers
--    with 422 naming the key (the contract of Stripe's keys and the IETF Idempotency-Key
--    draft). Keys stored before this migration have no fingerprint and replay as before.
--
-- 2. Moving a photo to another review (UPDATE reviews_photos SET review_id = …, an
--    operator's fix) notified only the new review's product: the old product kept listing
--    the photo in the hosts' caches. Both products are notified now.

ALTER TABLE atelier.review_requests ADD COLUMN request_hash text;

CREATE FUNCTION public.check_idempotent_replay(p_key text, p_stored text, p_fingerprint text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_stored IS NOT NULL AND p_stored <> p_fingerprint THEN
    RAISE EXCEPTION 'Idempotency-Key "%" was already used with a different request', p_key USING ERRCODE = 'AT422';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION public.create_review(
  p_product integer, p_rating smallint, p_summary text, p_body text, p_recommend boolean,
  p_name text, p_email text, p_photos text[], p_characteristics integer[], p_values smallint[],
  p_key text,
  OUT review_id integer, OUT created boolean, OUT foreign_characteristics integer[])
LANGUAGE plpgsql AS $$
DECLARE
  owned integer[];
  fingerprint text;
  stored text;
BEGIN
  created := false;
  IF p_key IS NOT NULL THEN
    -- The request as the key's first use sent it: a row value prints every field quoted
    -- and delimited, so two different requests never print alike.
    fingerprint := md5(ROW(p_product, p_rating, p_summary, p_body, p_recommend, p_name, p_email,
                           p_photos, p_characteristics, p_values)::text);
    SELECT r.review_id, r.request_hash INTO review_id, stored FROM atelier.review_requests r WHERE r.idempotency_key = p_key;
    IF FOUND THEN
      PERFORM public.check_idempotent_replay(p_key, stored, fingerprint);
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
      INSERT INTO atelier.review_requests AS k (idempotency_key, review_id, request_hash)
      VALUES (p_key, create_review.review_id, fingerprint) ON CONFLICT DO NOTHING;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key taken' USING ERRCODE = 'AT409';
      END IF;
    END IF;
    created := true;
  EXCEPTION WHEN SQLSTATE 'AT409' THEN
    -- Rolled back to the block's start: nothing of this review remains.
    SELECT r.review_id, r.request_hash INTO review_id, stored FROM atelier.review_requests r WHERE r.idempotency_key = p_key;
    PERFORM public.check_idempotent_replay(p_key, stored, fingerprint);
  END;
END
$$;

CREATE OR REPLACE FUNCTION public.notify_review_photo_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- OLD is NULL for an INSERT and NEW for a DELETE; an UPDATE may move the photo.
  PERFORM pg_notify('atelier_review_changes', r.product_id::text)
  FROM atelier.reviews r
  WHERE r.id IN (OLD.review_id, NEW.review_id);
  RETURN NULL;
END
$$;
