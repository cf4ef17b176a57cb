"""`python -m simclr_tf2.embed`: a short name of `python -m simclr_tf2.embedding`."""

from simclr_tf2.embedding import command

if __name__ == "__main__":
    command.main()
