"""Foundation shared by every stage: errors, paths, atomic writes, image I/O, processes, events, SQLite, typed settings."""
