"""`python -m illusort.cli`: the `illusort` command."""
from . import main

main()
