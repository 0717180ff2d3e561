"""The node's HTTP API: its routes per area, their auth, errors and request parsing, and the OpenAPI document."""
