"""MFA decision logic: SANS-I/O, time and randomness passed in."""
