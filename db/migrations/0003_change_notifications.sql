-- Change notifications for the hosts' response caches: every committed change to what a
-- product's reads return sends NOTIFY atelier_review_changes with the product id as the
-- payload ('*' = everything changed, e.g. a TRUNCATE). PostgreSQL delivers a notification
-- only when its transaction commits, and folds identical ones within a transaction, so a
-- POST (review, photos, aggregates) sends one message per product. Triggers rather than
-- calls in the API's SQL, so that every writer is covered: the API, `npm run verify
-- --repair`, and an operator's hand-written fix. The import replays these triggers on
-- its staging tables and announces '*' in its swap transaction.

CREATE FUNCTION public.notify_review_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify('atelier_review_changes', '*');
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('atelier_review_changes', OLD.product_id::text);
  ELSE
    PERFORM pg_notify('atelier_review_changes', NEW.product_id::text);
    IF TG_OP = 'UPDATE' AND OLD.product_id <> NEW.product_id THEN
      PERFORM pg_notify('atelier_review_changes', OLD.product_id::text);
    END IF;
  END IF;
  RETURN NULL;
END
$$;

-- Photos carry only their review's id: look the product up.
CREATE FUNCTION public.notify_review_photo_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('atelier_review_changes', r.product_id::text)
  FROM atelier.reviews r
  WHERE r.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.review_id ELSE NEW.review_id END;
  RETURN NULL;
END
$$;

CREATE TRIGGER reviews_changed AFTER INSERT OR UPDATE OR DELETE ON atelier.reviews
  FOR EACH ROW EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER reviews_truncated AFTER TRUNCATE ON atelier.reviews
  FOR EACH STATEMENT EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER characteristics_changed AFTER INSERT OR UPDATE OR DELETE ON atelier.characteristics
  FOR EACH ROW EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER characteristics_truncated AFTER TRUNCATE ON atelier.characteristics
  FOR EACH STATEMENT EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER product_ratings_changed AFTER INSERT OR UPDATE OR DELETE ON atelier.product_ratings
  FOR EACH ROW EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER product_ratings_truncated AFTER TRUNCATE ON atelier.product_ratings
  FOR EACH STATEMENT EXECUTE FUNCTION public.notify_review_change();
CREATE TRIGGER reviews_photos_changed AFTER INSERT OR UPDATE OR DELETE ON atelier.reviews_photos
  FOR EACH ROW EXECUTE FUNCTION public.notify_review_photo_change();
CREATE TRIGGER reviews_photos_truncated AFTER TRUNCATE ON atelier.reviews_photos
  FOR EACH STATEMENT EXECUTE FUNCTION public.notify_review_change();
