import sys

from pyramid_lab.bench.options import parser


def console() -> None:
    """The pyramid-lab-bench command: main() returns the records, which a console script would
    take for its exit status."""
    # The arguments first: --help and a bad argument answer in well under a second, before the
    # bench's modules import torch and Lightning (seconds).
    parser().parse_args(sys.argv[1:])
    from pyramid_lab.bench.cli import main

    main()


if __name__ == "__main__":
    console()
