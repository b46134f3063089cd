"""Helpers that start real processes on loopback and read the real database."""
