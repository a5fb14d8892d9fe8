"""northwind-elt: the shared contract and operations of the Northwind daily pipeline."""
