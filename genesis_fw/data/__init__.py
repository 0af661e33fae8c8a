"""The data stage: timeframes, the candle store, the exchange client, fetching, dataset versions,
validation and importing. Modules are imported directly (``genesis_fw.data.store``); this package
imports nothing so that loading one module stays cheap."""
