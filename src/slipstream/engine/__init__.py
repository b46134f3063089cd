"""The local engine: runner processes (one model each) and the supervisor that starts and stops them."""
