"""``python -m dualexpert.cli``: the same as the ``dualexpert`` command."""

from . import app

if __name__ == "__main__":  # importing this module (a package walk) must not run the app
    app(prog_name="dualexpert")
