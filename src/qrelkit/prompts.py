"""Versioned prompt templates, kept as YAML files inside the package (or given as a path by the user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import InputError
from .llm.base import Message

PROMPT_DIR = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class Prompt:
    """A chat prompt with ``{{field}}`` placeholders. ``ref`` (``id@version``) is recorded in every output."""

    id: str
    version: int
    system: str
    user: str
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def render_user(self, **fields: str) -> str:
        user = self.user
        for name, value in fields.items():
            user = user.replace("{{" + name + "}}", value)  # plain replace: documents may contain braces
        return user.strip()

    def messages(self, **fields: str) -> list[Message]:
        """System turn, worked examples (``examples:`` in the YAML) as earlier turns, then the user turn."""
        msgs: list[Message] = [{"role": "system", "content": self.system.strip()}]
        for ex in self.extra.get("examples", []):  # type: ignore[attr-defined]
            shots = {k: str(v) for k, v in ex.items() if k != "reply"}
            msgs += [
                {"role": "user", "content": self.render_user(**shots)},
                {"role": "assistant", "content": str(ex["reply"]).strip()},
            ]
        msgs.append({"role": "user", "content": self.render_user(**fields)})
        return msgs


def load_prompt(name_or_path: str) -> Prompt:
    """Load a packaged prompt by id (``judge-rubric``, ``synth-queries``) or a YAML file of the same shape."""
    path = Path(name_or_path)
    if not path.exists():
        path = PROMPT_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.yaml"))
        raise InputError(name_or_path, f"no such prompt (packaged prompts: {', '.join(known)})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("id", "version", "system", "user"):
        if key not in data:
            raise InputError(path, "missing key", field=key)
    extra = {k: v for k, v in data.items() if k not in ("id", "version", "system", "user")}
    return Prompt(
        id=str(data["id"]), version=int(data["version"]), system=data["system"], user=data["user"], extra=extra
    )
