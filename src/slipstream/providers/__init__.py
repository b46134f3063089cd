"""Providers: the one seam between the gateway and whatever actually runs a model."""
