"""HTTP surface: the app factory, thin routers, SSE encoding and middleware."""
