"""Alembic migrations of the enrolment database (the only way its schema is created or changed).

Run by :func:`mfa_radius.adapters.sql_enrolments.migrate` at start-up; ``env.py`` also works
with the ``alembic`` command for writing new revisions (see ``env.py``).
"""
