"""Internal: AI provenance (datasets, runs, evaluations, predictions, lineage). Not a stable API."""
