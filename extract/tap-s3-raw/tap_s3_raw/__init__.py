"""tap-s3-raw: JSON-lines S3 objects, checked, one record {key, line, payload} per line."""
