-- The read model of GET /reviews: each review's contract JSON, rendered once when the
-- review is written instead of on every read. `card` holds the object from its opening
-- brace through `"helpfulness":` (every field that never changes after the review is
-- written); a list page appends the live helpfulness and the photos:
--   card || helpfulness || ',"photos":' || <photos> || '}'
-- so a page is an index range scan that concatenates ready text (src/reviews/sql/list-reviews.sql).
-- Kept exact by the database for every writer: a BEFORE trigger renders it on INSERT and
-- on any UPDATE of the fields it holds. The import renders the same bytes itself while
-- streaming the CSV (src/etl/rows.ts) and COPYs them; `npm run verify` compares every
-- card with public.review_card() of its row (and --repair rewrites those that differ).

-- Compact JSON, the same bytes JSON.stringify gives (to_json escapes strings exactly as it
-- does); dates as ISO-8601 UTC with milliseconds. IMMUTABLE: it uses no setting (the
-- format has no locale-dependent fields and the time zone is fixed).
CREATE FUNCTION public.review_card(id integer, rating smallint, summary text, recommend boolean,
                                   response text, body text, reviewed_at timestamptz, reviewer_name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"review_id":' || id || ',"rating":' || rating || ',"summary":' || to_json(summary)::text
    || ',"recommend":' || recommend || ',"response":' || coalesce(to_json(response)::text, 'null')
    || ',"body":' || to_json(body)::text
    || ',"date":"' || to_char(reviewed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    || '","reviewer_name":' || to_json(reviewer_name)::text || ',"helpfulness":';

CREATE FUNCTION public.render_review_card() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.card := public.review_card(NEW.id, NEW.rating, NEW.summary, NEW.recommend, NEW.response, NEW.body, NEW.date, NEW.reviewer_name);
  RETURN NEW;
END
$$;

ALTER TABLE atelier.reviews ADD COLUMN card text;
UPDATE atelier.reviews SET card = public.review_card(id, rating, summary, recommend, response, body, date, reviewer_name);
ALTER TABLE atelier.reviews ALTER COLUMN card SET NOT NULL;

-- Helpful votes and reports update other columns and do not fire it.
CREATE TRIGGER reviews_card BEFORE INSERT OR UPDATE OF id, rating, summary, recommend, response, body, date, reviewer_name
  ON atelier.reviews FOR EACH ROW EXECUTE FUNCTION public.render_review_card();
