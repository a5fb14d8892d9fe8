"""PADAM pipeline: the monthly `entity` data generator and its helpers."""
