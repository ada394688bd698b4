"""The `angiosynth` command line: thin commands over the library."""
