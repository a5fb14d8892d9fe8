"""The core: the unit contract (day), errors, settings, the ledger, locks, manifests and files."""
