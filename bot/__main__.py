"""`python -m bot` runs the `incident-bot` command."""

from bot.cli import main

main()
