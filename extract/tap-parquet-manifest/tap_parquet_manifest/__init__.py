"""Singer tap for the Parquet files a manifest names, verified before anything is emitted."""
