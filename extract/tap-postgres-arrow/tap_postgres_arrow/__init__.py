"""Singer tap: meltanolabs-tap-postgres + ADBC bulk reads into exactly typed Parquet BATCH files."""
