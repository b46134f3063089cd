"""Test doubles that are real network peers, shipped so tests and benchmarks share them."""
