"""The durable job runner: typed settings of every stage's job kind, the SQLite store and the workers that run them."""
