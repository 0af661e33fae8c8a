"""The end-to-end workflow (``genesis-fw e2e``): every stage from fetching candles to champion selection as
steps cached by the content hashes of their inputs, with a run summary (terminal, JSON, HTML page)."""
