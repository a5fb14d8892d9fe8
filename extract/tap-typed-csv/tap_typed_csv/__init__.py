"""Singer tap reading CSV files in bulk with pyarrow against declared, ordered, typed columns."""
