"""R1V Tutor web app (Gradio). Placeholder until the web-app issue lands: prints how to solve from
the command line."""

import sys


def main() -> int:
    print(
        "R1V Tutor: the web page is not built yet.\n"
        "Solve a photographed problem from the command line:\n"
        "  python -m engine solve assets/examples/<image> --model tiny-random --n 3 --json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
