-- One review's JSON object, as GET /reviews lists it (alias r: a row of atelier.reviews with
-- the columns the list statement selects). Spliced into list-reviews.sql and into the hosts'
-- review memory's load (src/reviews/review-memory.ts), so both render the same bytes.
json_build_object(
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
)
