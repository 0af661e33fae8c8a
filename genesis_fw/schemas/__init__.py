"""JSON Schemas of the files genesis-fw writes and reads back (``model.schema.json``: model files)."""
