"""Singer target: typed Parquet files, one per stream, staged for the day's publish step."""
