"""The store: tables, migrations, and the one seam every component reads and writes through."""
