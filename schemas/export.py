"""JSON Schema files for every message, so producers in any language validate
against the same contract as Attune. ``attune schemas export`` writes them;
a test fails when the committed files are stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.content import ContentTombstone, ContentUpsert
from schemas.deadletter import DeadLetterRecord
from schemas.events import BehaviourEvent

JSON_DIR = Path(__file__).parent / "json"

MESSAGES: dict[str, type[BaseModel]] = {
    "content-upsert": ContentUpsert,
    "content-tombstone": ContentTombstone,
    "behaviour-event": BehaviourEvent,
    "dead-letter": DeadLetterRecord,
}


def schema_file_name(name: str, model: type[BaseModel]) -> str:
    version = model.model_fields["schema_version"].default
    return f"{name}.v{version}.json"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, exactly as it is written to disk."""
    rendered: dict[str, str] = {}
    for name, model in MESSAGES.items():
        schema: dict[str, Any] = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://attune.dev/schemas/{schema_file_name(name, model)}"
        rendered[schema_file_name(name, model)] = (
            json.dumps(schema, indent=2, sort_keys=True) + "\n"
        )
    return rendered


def write_schemas(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render_schemas().items():
        path = directory / file_name
        path.write_text(text)
        written.append(path)
    return written


def stale_schema_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing or differ from what the models render."""
    return [
        file_name
        for file_name, text in render_schemas().items()
        if not (directory / file_name).is_file() or (directory / file_name).read_text() != text
    ]
