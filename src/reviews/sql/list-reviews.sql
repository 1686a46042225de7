-- GET /reviews for a batch of requests with one sort order (concurrent cold reads share
-- one round trip: src/reviews/repository.ts): for each request, one page of a product's
-- visible reviews, photos included, rendered as the contract's JSON array, with the number
-- of visible reviews on all pages (X-Total-Count) read from the product's rating counts by
-- primary key. One row per request, in the order given.
-- The REVIEW placeholder is one review's JSON object, from review-object.sql (the hosts' review memory
-- renders the same objects); /*ORDER*/ is replaced from a closed map in code; each order is a range scan of its
-- partial index (reviews_newest_idx, reviews_helpful_idx, reviews_relevant_idx) per
-- request, stopped by LIMIT, and photos come from reviews_photos_review_idx.
-- $1 product ids, $2 page sizes, $3 offsets, $4 the star ratings listed and counted, as
-- bit masks (bit n set: rating n; all five: 62)
SELECT page.results, page.total
FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::integer[]) WITH ORDINALITY AS k(product_id, size, skip, ratings, i)
CROSS JOIN LATERAL (
  SELECT coalesce(json_agg(/*REVIEW*/ ORDER BY /*ORDER*/), '[]'::json)::text AS results,
         coalesce((SELECT (CASE WHEN k.ratings & 2 <> 0 THEN r1 ELSE 0 END) + (CASE WHEN k.ratings & 4 <> 0 THEN r2 ELSE 0 END)
                        + (CASE WHEN k.ratings & 8 <> 0 THEN r3 ELSE 0 END) + (CASE WHEN k.ratings & 16 <> 0 THEN r4 ELSE 0 END)
                        + (CASE WHEN k.ratings & 32 <> 0 THEN r5 ELSE 0 END)
                   FROM atelier.product_ratings WHERE product_id = k.product_id), 0) AS total
  FROM (
    SELECT id, rating, summary, recommend, response, body, date, reviewer_name, helpfulness
    FROM atelier.reviews
    WHERE product_id = k.product_id AND NOT reported AND (k.ratings >> rating) & 1 = 1
    ORDER BY /*ORDER*/
    LIMIT k.size OFFSET k.skip
  ) r
) page
ORDER BY k.i
