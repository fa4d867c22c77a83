"""`python -m dfpipe` (also what torchrun launches)."""

from dfpipe.cli.main import app

if __name__ == "__main__":
    app()
