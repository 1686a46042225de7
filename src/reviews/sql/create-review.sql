-- POST /reviews: the review, its photos, its characteristic ratings and the meta
-- aggregates in one statement (run inside a transaction that has already locked the
-- product's characteristics rows in id order, so concurrent writers cannot deadlock).
-- $1 product_id, $2 rating, $3 summary, $4 body, $5 recommend, $6 name, $7 email,
-- $8 photo urls, $9 characteristic ids, $10 their values
WITH review AS (
  INSERT INTO atelier.reviews (product_id, rating, summary, body, recommend, reviewer_name, reviewer_email)
  VALUES ($1::integer, $2::smallint, $3::text, $4::text, $5::boolean, $6::text, $7::text)
  RETURNING id
), photos AS (
  INSERT INTO atelier.reviews_photos (review_id, url)
  SELECT review.id, u.url
  FROM review, unnest($8::text[]) WITH ORDINALITY AS u(url, n)
  ORDER BY u.n
), ratings AS (
  INSERT INTO atelier.characteristic_reviews (characteristic_id, review_id, value)
  SELECT c.id, review.id, c.value
  FROM review, unnest($9::integer[], $10::smallint[]) AS c(id, value)
), characteristic_totals AS (
  UPDATE atelier.characteristics ch
  SET rating_sum = ch.rating_sum + c.value, rating_count = ch.rating_count + 1
  FROM unnest($9::integer[], $10::smallint[]) AS c(id, value)
  WHERE ch.id = c.id
), product_totals AS (
  INSERT INTO atelier.product_ratings AS t (product_id, r1, r2, r3, r4, r5, recommended, not_recommended)
  VALUES ($1::integer, ($2::smallint = 1)::int, ($2::smallint = 2)::int, ($2::smallint = 3)::int,
          ($2::smallint = 4)::int, ($2::smallint = 5)::int, $5::boolean::int, (NOT $5::boolean)::int)
  ON CONFLICT (product_id) DO UPDATE SET
    r1 = t.r1 + excluded.r1, r2 = t.r2 + excluded.r2, r3 = t.r3 + excluded.r3,
    r4 = t.r4 + excluded.r4, r5 = t.r5 + excluded.r5,
    recommended = t.recommended + excluded.recommended,
    not_recommended = t.not_recommended + excluded.not_recommended
)
SELECT id FROM review
