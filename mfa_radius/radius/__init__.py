"""Radius wire layer: SANS-I/O encoding, decoding and the server endpoint machine."""
