"""`edge-model`: publish models to Blob Storage and point the loader's twin at them (architecture §9)."""
