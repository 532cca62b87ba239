"""Label images as data: editing, overlap tables, metrics and lookups (no models)."""
