"""The research stage: features and labels without lookahead, time-ordered splits, training,
calibration and evaluation of model-type plugins. Modules are imported directly
(``genesis_fw.ml.labels``); this package imports nothing so that loading one module stays cheap."""
