"""``python -m dualexpert.cli``: the same as the ``dualexpert`` command."""

from . import app

app(prog_name="dualexpert")
