"""The checks Discord makes on what a bot sends, and its error answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["Rejection", "check_command", "check_components", "check_message_body", "invalid"]

COMPONENTS_V2 = 1 << 15
_NAME = re.compile(r"^[-_\w]{1,32}$")


class Rejection(Exception):
    """An error answer the way Discord words it; ``problem`` marks a bot mistake."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: Mapping[str, Any] | None = None,
        problem: bool = True,
        detail: str = "",
    ) -> None:
        super().__init__(f"{status} {code} {message} {detail}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.problem = problem
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def invalid(field_path: str, message: str, code: str = "BASE_TYPE_INVALID") -> Rejection:
    """A 400 Invalid Form Body naming one field (``a.0.b``)."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_path.split(".")):
        errors = {part: errors}
    return Rejection(
        400, 50035, "Invalid Form Body", errors=errors, detail=f"{field_path}: {message}"
    )


def check_message_body(body: Mapping[str, Any], *, n_files: int) -> None:
    """Refuse a message body Discord would refuse: lengths, embeds, files, components."""
    content = body.get("content")
    if content is not None and len(str(content)) > 2000:
        raise invalid("content", "Must be 2000 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise invalid("embeds", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                raise invalid(f"embeds.{i}.{key}", f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise invalid(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
        for j, fld in enumerate(fields):
            if not fld.get("name") or not fld.get("value"):
                raise invalid(f"embeds.{i}.fields.{j}", "name and value are required")
            total += len(fld["name"]) + len(fld["value"])
        total += len((embed.get("footer") or {}).get("text") or "")
    if total > 6000:
        raise invalid("embeds", "Embed size exceeds maximum size of 6000")
    if n_files > 10:
        raise invalid("files", "Must be 10 or fewer in length.")
    if not int(body.get("flags") or 0) & COMPONENTS_V2:
        check_components(body.get("components") or [])


def check_components(rows: list[Mapping[str, Any]]) -> None:
    """Refuse classic (non-V2) components Discord would refuse: rows, sizes, custom ids."""
    if len(rows) > 5:
        raise invalid("components", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if row.get("type") != 1:
            raise invalid(f"components.{i}.type", "Top-level components must be rows")
        items = row.get("components") or []
        if not 1 <= len(items) <= 5:
            raise invalid(f"components.{i}.components", "A row holds 1 to 5 components")
        for j, item in enumerate(items):
            where = f"components.{i}.components.{j}"
            if item.get("type") != 2 and len(items) > 1:
                raise invalid(where, "A select menu must be alone in its row")
            if item.get("type") == 2 and item.get("style") == 5:
                if not item.get("url") or "custom_id" in item:
                    raise invalid(where, "A link button needs a url and no custom_id")
                continue
            if item.get("type") == 2 and item.get("style") == 6:
                continue  # premium button
            custom_id = item.get("custom_id") or ""
            if not 1 <= len(custom_id) <= 100:
                raise invalid(f"{where}.custom_id", "Must be between 1 and 100 in length.")
            if custom_id in seen:
                raise invalid(f"{where}.custom_id", "Component custom id cannot be duplicated")
            seen.add(custom_id)
            if len(item.get("label") or "") > 80:
                raise invalid(f"{where}.label", "Must be 80 or fewer in length.")


def check_command(index: int, spec: Mapping[str, Any]) -> None:
    """Refuse a command spec Discord would refuse in a bulk overwrite (at ``index``)."""
    kind = spec.get("type", 1)
    name = spec.get("name", "")
    where = f"{index}.name"
    if kind == 1:
        if not _NAME.fullmatch(name) or name != name.lower():
            raise invalid(where, f"Invalid chat input command name {name!r}")
        if not 1 <= len(spec.get("description", "")) <= 100:
            raise invalid(f"{index}.description", "Must be between 1 and 100 in length.")
    elif not 1 <= len(name) <= 32:
        raise invalid(where, "Must be between 1 and 32 in length.")
    stack = [(f"{index}.options", spec.get("options") or [])]
    while stack:
        path, options = stack.pop()
        if len(options) > 25:
            raise invalid(path, "Must be 25 or fewer in length.")
        for j, opt in enumerate(options):
            if not _NAME.fullmatch(opt.get("name", "")) or opt["name"] != opt["name"].lower():
                raise invalid(f"{path}.{j}.name", f"Invalid option name {opt.get('name')!r}")
            if not 1 <= len(opt.get("description", "")) <= 100:
                raise invalid(f"{path}.{j}.description", "Must be between 1 and 100.")
            if len(opt.get("choices") or []) > 25:
                raise invalid(f"{path}.{j}.choices", "Must be 25 or fewer in length.")
            stack.append((f"{path}.{j}.options", opt.get("options") or []))
