"""The usage ledger: one row per request, priced exactly, written in batches, reported by key/model/day."""
