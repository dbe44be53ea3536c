"""`python -m gmmcli`: the same command line as the `gmmcli` console script."""

from gmmcli.cli import main

main()
