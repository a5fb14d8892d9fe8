"""People and places: its definition and its outputs."""
