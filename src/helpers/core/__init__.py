"""The book's core: settings, seeding, claim checks and their ledger, the start of a chapter,
the figure style, progress bars and input validation. Imports nothing else of ``helpers``."""
