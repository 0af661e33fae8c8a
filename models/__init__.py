"""Built-in model types, registered under the ``genesis_fw.models`` entry-point group."""
