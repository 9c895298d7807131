"""`python -m binclass ...`: the command line (also what `torchrun -m binclass train ...` runs)."""

from .cli import main

main()
