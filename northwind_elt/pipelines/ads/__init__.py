"""The ads pipeline: API -> S3 backup -> Postgres, and a daily archive (spec: shared/specs/ads-api.md)."""
