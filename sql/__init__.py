"""SQL files run by DuckDB (installed as ``genesis_fw_sql``); see ``genesis_fw.sqlfiles``."""
