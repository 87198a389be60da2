#!/opt/kittenfs/bin/python3
"""ENV SHIM, to delete once kittenfs reads KITTENFS_* itself: run ``kittenfs ROLE ARGS``
with a flag ``--foo-bar VALUE`` added for each $KITTENFS_FOO_BAR that ROLE has as a flag
("1"/"true"/"yes" turns a switch on) and that ARGS do not give already."""

import argparse
import os
import sys

from kittenfs.cli import build_parser

#: Flags left out: no value, or read from the environment by kittenfs already (and a token
#: in the command line would show in ps).
KNOWN = ("--help", "--admin-token")


def flags(role: str, args: list[str]) -> list[str]:
    """Return the flags that the environment gives ``kittenfs role``."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    added: list[str] = []
    for action in sub.choices[role]._actions:
        option = next((o for o in action.option_strings if o.startswith("--")), "--help")
        value = os.environ.get("KITTENFS_" + option[2:].upper().replace("-", "_"))
        given = any(a == option or a.startswith(option + "=") for a in args)
        if value is None or given or option in KNOWN:
            continue
        if action.nargs == 0:
            added += [option] if value.lower() in ("1", "true", "yes", "on") else []
        else:
            added += [option, value]
    return added


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    os.execvp("kittenfs", ["kittenfs", role, *flags(role, rest), *rest])
