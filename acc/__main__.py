"""``python -m acc`` is the ``acc`` command."""

from acc.cli import app

if __name__ == "__main__":  # not when a spawned worker process imports this module
    app()
