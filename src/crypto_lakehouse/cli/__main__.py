"""``python -m crypto_lakehouse.cli``: the ``lakehouse`` command."""

from crypto_lakehouse.cli import main

main()
