"""``python -m tasks.settings --markdown``: print docs/settings.md as the definitions say it;
``python -m tasks.settings``: check this environment's settings, as ``mailscan check-config``."""

from __future__ import annotations

import argparse

from tasks.settings.loading import load_settings
from tasks.settings.markdown import render


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.settings", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print docs/settings.md")
    if parser.parse_args().markdown:
        print(render(), end="")
    else:
        load_settings()
        print("settings ok")


if __name__ == "__main__":
    main()
