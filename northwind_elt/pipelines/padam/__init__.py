"""PADAM monthly stats: the generator, the warehouse merge, the stats files and their commands."""
