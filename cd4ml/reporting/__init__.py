"""Views of what the store recorded: the console, run summaries, the markdown report, lineage."""
