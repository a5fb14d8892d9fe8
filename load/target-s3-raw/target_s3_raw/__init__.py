"""target-s3-raw: records as received, one JSON line each, in one verified S3 object per stream."""
