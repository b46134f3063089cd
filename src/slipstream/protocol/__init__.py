"""Wire types only: what clients send and what they receive. No I/O here."""
