"""Allow ``python -m mfa_radius``."""

from mfa_radius.cli import main

main()
