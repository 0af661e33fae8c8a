"""Model comparison with significance tests, walk-forward robustness and champion selection
(docs/CHAMPION_SELECTION.md)."""
