"""Local stand-ins for what production provides: embedded Postgres, the mock ads API, an S3 server."""
