"""`python -m simclr_tf2.embedding`: the same command as `simclr-embed`."""

from simclr_tf2.embedding import command

if __name__ == "__main__":
    command.main()
