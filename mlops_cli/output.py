"""What the commands print: JSON or human tables on stdout; progress on stderr only."""

import json

import click


def emit(data, as_json: bool, columns: list[str]) -> None:
    """Print one object or a list of them: JSON, or a table of `columns`."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = data if isinstance(data, list) else [data]
    if isinstance(data, dict):  # one object: one field per line
        width = max(map(len, columns))
        for column in columns:
            click.echo(f"{column.ljust(width)}  {cell(data.get(column))}")
        return
    table = [columns, *([cell(row.get(column)) for column in columns] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        click.echo(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        )
    if not rows:
        click.echo("(none)")


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def progress(message: str) -> None:
    """A progress line while waiting: stderr, so `--json` output stays parseable."""
    click.echo(message, err=True)
