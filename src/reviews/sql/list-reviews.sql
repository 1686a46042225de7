-- GET /reviews: one page of a product's visible reviews, photos included, rendered as
-- the contract's JSON array in one round trip. /*ORDER*/ is replaced from a closed map
-- in code (src/reviews/repository.ts); each order is a range scan of its partial index
-- (reviews_newest_idx, reviews_helpful_idx, reviews_relevant_idx) stopped by LIMIT, and
-- photos come from reviews_photos_review_idx.
-- $1 product_id, $2 page size, $3 offset
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
       ) ORDER BY /*ORDER*/), '[]'::json)::text AS results
FROM (
  SELECT id, rating, summary, recommend, response, body, date, reviewer_name, helpfulness
  FROM atelier.reviews
  WHERE product_id = $1 AND NOT reported
  ORDER BY /*ORDER*/
  LIMIT $2 OFFSET $3
) r
