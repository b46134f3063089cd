"""Model access keys, the admin token and the principal a key authenticates as."""
