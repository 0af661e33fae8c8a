"""The model registry: champion, challenger and retired versions of each (symbol, timeframe), kept in
``<models_dir>/registry.db`` (SQLite) and ``registry.json`` (the state a trading bot reads), with an
append-only, hash-chained audit log mirrored to a JSON-lines file (docs/CHAMPION_SELECTION.md)."""
