from pyramid_lab.bench.cli import main


def console() -> None:
    """The pyramid-lab-bench command: main() returns the records, which a console script would
    take for its exit status."""
    main()


if __name__ == "__main__":
    console()
