"""The fitness indexer: materializes workout events into research tables."""
