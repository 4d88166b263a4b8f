"""``python -m conveyor.cli``: the ``conveyor`` command, without the console script."""

from conveyor.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
