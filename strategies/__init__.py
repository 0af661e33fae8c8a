"""Built-in strategies, registered under the ``genesis_fw.strategies`` entry-point group."""
