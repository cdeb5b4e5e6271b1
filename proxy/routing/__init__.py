"""Resilience in the upstream stage: deployments, the router, health, the attempt loop (docs/routing.md)."""
