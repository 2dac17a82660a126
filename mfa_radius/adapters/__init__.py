"""Adapters: one module per outside system, each implementing a port from mfa_radius.ports."""
