"""The Report facade and everything it offers: assembling, tables, files, plots, HTML, crosscheck."""
