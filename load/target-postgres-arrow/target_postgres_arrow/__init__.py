"""target-postgres-arrow: meltanolabs-target-postgres with Parquet BATCH files loaded through ADBC."""
