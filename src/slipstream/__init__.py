"""Slipstream: self-hostable serverless inference behind one OpenAI-compatible API."""

__version__ = "0.1.0"
