"""``python -m cgd.simulator``: serve until SIGINT/SIGTERM (options: ``--help``)."""

from cgd.simulator.cli import main

if __name__ == "__main__":
    main()
