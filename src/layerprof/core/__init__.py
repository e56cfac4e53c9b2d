"""Records, the row-name grammar, units, dtypes and argument validation: the bottom layer."""
