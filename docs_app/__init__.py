"""Documentation pages, revisions and model cards: built by the docs issue (#5)."""
