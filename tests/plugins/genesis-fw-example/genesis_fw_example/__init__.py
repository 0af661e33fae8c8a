"""Example genesis-fw plugins: the ``buy_and_hold`` strategy and the ``always_half`` model type.

Nothing is imported here: genesis-fw imports ``genesis_fw_example.strategies`` or
``genesis_fw_example.models`` only when the plugin is used.
"""
