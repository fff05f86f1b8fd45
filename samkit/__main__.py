"""``python -m samkit MODE key=value ...`` (what ``torchrun -m samkit train ...`` runs): the ``samkit`` command."""

from samkit.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
