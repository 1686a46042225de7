-- Defects found by an outside review (issue 19), and helpful/report in one statement each.
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
--
-- 3. Writes during an import. The import builds the new data set from the export alone and
--    swaps it in, so a review, vote or report written to the old tables while it runs would
--    be acknowledged and then vanish at the swap (with the idempotency keys that made a retry
--    safe). Carrying such writes into the new tables is not sound in general: the export
--    replaces the whole data set, including the review ids a vote or report names and the
--    characteristic ids a new review rates, and it may already contain a review that was
--    written meanwhile. So writes are refused, with a JSON 503 and Retry-After, for exactly
--    the import's run: the import holds the write fence (an exclusive advisory lock, taken
--    after in-flight writes finish, released when it ends, whether it swapped or failed), and
--    every write takes the fence shared for its transaction, or raises AT503.
--
-- 4. helpful and report become one statement each, like POST (0004): report was five round
--    trips (BEGIN, flip, lock, aggregates, COMMIT).

ALTER TABLE atelier.review_requests ADD COLUMN request_hash text;

CREATE FUNCTION public.check_idempotent_replay(p_key text, p_stored text, p_fingerprint text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_stored IS NOT NULL AND p_stored <> p_fingerprint THEN
    RAISE EXCEPTION 'Idempotency-Key "%" was already used with a different request', p_key USING ERRCODE = 'AT422';
  END IF;
END
$$;

-- 5. Each write names its request: application_name becomes "atelier-reviews <request id>"
--    for the write's transaction (pg_stat_activity; %a in log_line_prefix). The id comes
--    from the API, already checked (8-64 of A-Za-z0-9._-); empty means none.
CREATE FUNCTION public.tag_request(p_request_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_request_id <> '' THEN
    PERFORM set_config('application_name', 'atelier-reviews ' || p_request_id, true);
  END IF;
END
$$;

CREATE FUNCTION public.assert_writes_open() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- 7240103: the write fence (src/etl/load.ts takes it exclusively for an import's run).
  IF NOT pg_try_advisory_xact_lock_shared(7240103) THEN
    RAISE EXCEPTION 'Writes are paused while a data import replaces the reviews; retry in a minute.' USING ERRCODE = 'AT503';
  END IF;
END
$$;

-- PUT /reviews/:id/helpful: the review's product, NULL when no review has this id.
CREATE FUNCTION public.mark_helpful(p_review integer, p_request_id text DEFAULT '', OUT product_id integer)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM public.tag_request(p_request_id);
  PERFORM public.assert_writes_open();
  UPDATE atelier.reviews r SET helpfulness = r.helpfulness + 1 WHERE r.id = p_review RETURNING r.product_id INTO mark_helpful.product_id;
END
$$;

-- PUT /reviews/:id/report: hides the review and subtracts it from the aggregates once (a
-- second report finds it hidden and changes nothing); the product's characteristics are
-- locked in id order first, as POST locks them. NULL when no review has this id.
CREATE FUNCTION public.report_review(p_review integer, p_request_id text DEFAULT '', OUT product_id integer)
LANGUAGE plpgsql AS $$
DECLARE
  v_rating smallint;
  v_recommend boolean;
BEGIN
  PERFORM public.tag_request(p_request_id);
  PERFORM public.assert_writes_open();
  UPDATE atelier.reviews r SET reported = true WHERE r.id = p_review AND NOT r.reported
  RETURNING r.product_id, r.rating, r.recommend INTO report_review.product_id, v_rating, v_recommend;
  IF NOT FOUND THEN
    SELECT r.product_id INTO report_review.product_id FROM atelier.reviews r WHERE r.id = p_review;
    RETURN;
  END IF;
  PERFORM 1 FROM atelier.characteristics c WHERE c.product_id = report_review.product_id ORDER BY c.id FOR UPDATE;
  UPDATE atelier.characteristics ch
  SET rating_sum = ch.rating_sum - t.sum, rating_count = ch.rating_count - t.n
  FROM (SELECT cr.characteristic_id, sum(cr.value) AS sum, count(*) AS n
        FROM atelier.characteristic_reviews cr
        WHERE cr.review_id = p_review
        GROUP BY cr.characteristic_id) t
  WHERE ch.id = t.characteristic_id;
  UPDATE atelier.product_ratings pr SET
    r1 = pr.r1 - (v_rating = 1)::int, r2 = pr.r2 - (v_rating = 2)::int, r3 = pr.r3 - (v_rating = 3)::int,
    r4 = pr.r4 - (v_rating = 4)::int, r5 = pr.r5 - (v_rating = 5)::int,
    recommended = pr.recommended - v_recommend::int,
    not_recommended = pr.not_recommended - (NOT v_recommend)::int
  WHERE pr.product_id = report_review.product_id;
END
$$;

-- A new parameter (the request id) is a new signature: the old one goes.
DROP FUNCTION public.create_review(integer, smallint, text, text, boolean, text, text, text[], integer[], smallint[], text);
CREATE FUNCTION public.create_review(
  p_product integer, p_rating smallint, p_summary text, p_body text, p_recommend boolean,
  p_name text, p_email text, p_photos text[], p_characteristics integer[], p_values smallint[],
  p_key text, p_request_id text DEFAULT '',
  OUT review_id integer, OUT created boolean, OUT foreign_characteristics integer[])
LANGUAGE plpgsql AS $$
DECLARE
  owned integer[];
  fingerprint text;
  stored text;
BEGIN
  PERFORM public.tag_request(p_request_id);
  PERFORM public.assert_writes_open();
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
