"""Singer target writing one typed Parquet file per stream into a folder."""
