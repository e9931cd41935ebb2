"""``python -m opendts`` is the ``opendts`` command."""

from opendts.cli.main import app

app()
