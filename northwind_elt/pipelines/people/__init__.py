"""People and places: its definition (its outputs are the dbt models it tags for export)."""
