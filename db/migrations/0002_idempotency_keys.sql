-- POST /reviews may carry an Idempotency-Key header: a retried request (after a timeout
-- or a host that died before answering) returns the review the first attempt created
-- instead of creating a second one. One row per key, written in the review's transaction.
CREATE TABLE atelier.review_requests (
  idempotency_key text        NOT NULL,
  review_id       integer     NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE atelier.review_requests ADD CONSTRAINT review_requests_pkey PRIMARY KEY (idempotency_key);
ALTER TABLE atelier.review_requests ADD CONSTRAINT review_requests_review_fk
  FOREIGN KEY (review_id) REFERENCES atelier.reviews (id);
