-- PUT /reviews/:id/report, second step: subtract an already-hidden review's
-- contribution from the meta aggregates. The caller flipped `reported` with
-- UPDATE … WHERE NOT reported, so this runs at most once per review, and it has
-- locked the product's characteristics rows in id order first.
-- $1 review_id, $2 product_id, $3 rating, $4 recommend
WITH characteristic_totals AS (
  UPDATE atelier.characteristics ch
  SET rating_sum = ch.rating_sum - t.sum, rating_count = ch.rating_count - t.n
  FROM (SELECT characteristic_id, sum(value) AS sum, count(*) AS n
        FROM atelier.characteristic_reviews
        WHERE review_id = $1
        GROUP BY characteristic_id) t
  WHERE ch.id = t.characteristic_id
)
UPDATE atelier.product_ratings SET
  r1 = r1 - ($3::smallint = 1)::int, r2 = r2 - ($3::smallint = 2)::int, r3 = r3 - ($3::smallint = 3)::int,
  r4 = r4 - ($3::smallint = 4)::int, r5 = r5 - ($3::smallint = 5)::int,
  recommended = recommended - $4::boolean::int,
  not_recommended = not_recommended - (NOT $4::boolean)::int
WHERE product_id = $2
