"""The HTTP API: FastAPI app factory, routes, authentication, problem JSON, middleware."""
