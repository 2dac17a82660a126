"""Listeners: bytes from a NAS in, replies out, one request handler shared by every transport."""
