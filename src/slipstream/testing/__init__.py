"""Test doubles that are real network peers, shipped so tests and benchmarks share them.

- ``fake_upstream``  a fast fake OpenAI-compatible server on loopback.
"""
