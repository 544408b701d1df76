"""Documentation pages with revisions and diffs, model cards, and search."""
