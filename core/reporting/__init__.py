"""Reports: finished runs read back into tables, paired tests, figures and an HTML page."""
