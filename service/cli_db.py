"""`headspec db ...`: schema management of the SQL store."""

from __future__ import annotations

import typer

db_app = typer.Typer(help="Manage the SQL store's schema.", no_args_is_help=True)
