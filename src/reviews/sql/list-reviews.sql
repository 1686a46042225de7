-- GET /reviews: one page of a product's visible reviews, photos included, rendered as
-- the contract's JSON array in one round trip, with the number of visible reviews on all
-- pages (X-Total-Count) read from the product's rating counts by primary key. /*ORDER*/ is replaced from a closed map
-- in code (src/reviews/repository.ts); each order is a range scan of its partial index
-- (reviews_newest_idx, reviews_helpful_idx, reviews_relevant_idx) stopped by LIMIT, and
-- photos come from reviews_photos_review_idx.
-- /*RATING*/ is empty, or `AND rating = ANY($4)` for ?rating=… (the same index range,
-- filtered: a product's reviews are few).
-- $1 product_id, $2 page size, $3 offset, $4 the star ratings counted and listed (1…5)
SELECT coalesce(json_agg(json_build_object(
         'review_id', r.id,
         'rating', r.rating,
         'summary', r.summary,
         'recommend', r.recommend,
         'response', r.response,
         'body', r.body,
         'date', to_char(r.date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'reviewer_name', r.reviewer_name,
         'helpfulness', r.helpfulness,
         'photos', coalesce((SELECT json_agg(json_build_object('id', p.id, 'url', p.url) ORDER BY p.id)
                             FROM atelier.reviews_photos p
                             WHERE p.review_id = r.id), '[]'::json)
       ) ORDER BY /*ORDER*/), '[]'::json)::text AS results,
       coalesce((SELECT (CASE WHEN 1 = ANY($4::smallint[]) THEN r1 ELSE 0 END) + (CASE WHEN 2 = ANY($4::smallint[]) THEN r2 ELSE 0 END)
                      + (CASE WHEN 3 = ANY($4::smallint[]) THEN r3 ELSE 0 END) + (CASE WHEN 4 = ANY($4::smallint[]) THEN r4 ELSE 0 END)
                      + (CASE WHEN 5 = ANY($4::smallint[]) THEN r5 ELSE 0 END)
                 FROM atelier.product_ratings WHERE product_id = $1), 0) AS total
FROM (
  SELECT id, rating, summary, recommend, response, body, date, reviewer_name, helpfulness
  FROM atelier.reviews
  WHERE product_id = $1 AND NOT reported /*RATING*/
  ORDER BY /*ORDER*/
  LIMIT $2 OFFSET $3
) r
