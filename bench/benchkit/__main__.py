"""``python -m benchkit APP_MODULE COMMAND ...``: see benchkit.driver."""

from benchkit.driver import main

main()
