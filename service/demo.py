"""What `headspec demo` runs. Grows with the project: today it only exists."""

from __future__ import annotations


def run_demo() -> None:
    print("headspec demo: nothing to run yet.")
