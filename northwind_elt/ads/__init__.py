"""The ads pipeline's local stand-ins: the third-party ads API (`api`) and the embedded S3 server (`s3server`)."""
