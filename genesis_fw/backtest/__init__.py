"""The backtest stage: the engine (data, decisions, run record), the numba position tracker,
metrics, the HTML report and saving runs. Modules are imported directly
(``genesis_fw.backtest.engine``); this package imports nothing so that loading one module stays cheap."""
