"""`python -m transferlab <command> ...`: the same commands as the installed `transferlab`."""

from transferlab.commands import main

if __name__ == "__main__":
    main()
