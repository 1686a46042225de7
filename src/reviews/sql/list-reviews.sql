-- GET /reviews: one page of a product's visible reviews, photos included, as the
-- contract's JSON array text in one round trip. /*ORDER*/ is replaced from a closed map
-- in code (src/reviews/repository.ts); each order is a range scan of its partial index
-- (reviews_newest_idx, reviews_helpful_idx, reviews_relevant_idx) stopped by LIMIT, and
-- photos come from reviews_photos_review_idx. Each review's JSON is read ready-made from
-- its card (db/migrations/0004) with the live helpfulness and its photos appended.
-- $1 product_id, $2 page size, $3 offset
SELECT '[' || coalesce(string_agg(
         r.card || r.helpfulness || ',"photos":'
           || coalesce((SELECT json_agg(json_build_object('id', p.id, 'url', p.url) ORDER BY p.id)
                        FROM atelier.reviews_photos p
                        WHERE p.review_id = r.id)::text, '[]')
           || '}',
         ',' ORDER BY /*ORDER*/), '') || ']' AS results
FROM (
  SELECT id, card, helpfulness, date
  FROM atelier.reviews
  WHERE product_id = $1 AND NOT reported
  ORDER BY /*ORDER*/
  LIMIT $2 OFFSET $3
) r
