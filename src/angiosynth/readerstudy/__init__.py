"""Reader study: the rating web app and the analysis of its ratings (paper §2.4)."""
