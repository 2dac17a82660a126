"""Alembic revisions of the enrolment database, oldest first (``down_revision`` chains them)."""
