"""The agent process: a pydantic-ai agent built from an Agent spec, its tools, its HTTP API."""
