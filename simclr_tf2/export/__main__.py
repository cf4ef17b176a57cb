"""`python -m simclr_tf2.export`: the same command as `simclr-export`."""

from simclr_tf2.export import command

if __name__ == "__main__":
    command.main()
