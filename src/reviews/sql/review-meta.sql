-- GET /reviews/meta: the contract's meta object for one product, read from the
-- aggregates kept by writes (product_ratings by primary key, characteristics by
-- characteristics_product_idx); no scan of reviews or ratings. Counts print as strings,
-- zero counts are left out, and value = sum::numeric / count::numeric, which is
-- exactly how PostgreSQL's avg() of integers computes and prints its result.
-- For a batch of requests (concurrent cold reads share one round trip, as lists do): one
-- row per product id, in the order given.
-- $1 product ids
SELECT json_build_object(
  'product_id', k.product_id::text,
  'ratings', coalesce((
      SELECT json_strip_nulls(json_build_object(
        '1', nullif(r1, 0)::text, '2', nullif(r2, 0)::text, '3', nullif(r3, 0)::text,
        '4', nullif(r4, 0)::text, '5', nullif(r5, 0)::text))
      FROM atelier.product_ratings WHERE product_id = k.product_id), '{}'::json),
  'recommended', coalesce((
      SELECT json_strip_nulls(json_build_object(
        'false', nullif(not_recommended, 0)::text, 'true', nullif(recommended, 0)::text))
      FROM atelier.product_ratings WHERE product_id = k.product_id), '{}'::json),
  'characteristics', coalesce((
      SELECT json_object_agg(name, json_build_object(
               'id', id,
               'value', (rating_sum::numeric / nullif(rating_count, 0)::numeric)::text) ORDER BY id)
      FROM atelier.characteristics WHERE product_id = k.product_id), '{}'::json)
)::text AS meta
FROM unnest($1::integer[]) WITH ORDINALITY AS k(product_id, i)
ORDER BY k.i
