"""`python -m illusort.cli`: the `illusort` command."""
from . import main

if __name__ == "__main__":
    main()
