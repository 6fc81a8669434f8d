"""``python -m taomm`` runs the command line (e.g. under ``torchrun -m taomm``)."""

from taomm.cli.app import main

if __name__ == "__main__":
    main()
