"""Service functions behind the thin HTTP routers: the request flow of DESIGN.md, step by step."""
