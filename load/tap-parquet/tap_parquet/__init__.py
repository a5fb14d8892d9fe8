"""Singer tap reading the day's step-1 Parquet partitions, only once they are verified."""
