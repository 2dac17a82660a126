"""mfa-radius: a RADIUS proxy that adds a second factor to VPN gateways and RD Gateway."""

__version__ = "0.1.0"
