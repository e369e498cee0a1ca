"""Core memory: small labelled text blocks, always in context, edited by the agent itself."""

from __future__ import annotations

from dataclasses import dataclass

from bot.quoting import neutralise
from bot.store import Statement


class CoreMemoryError(ValueError):
    """An edit the agent asked for cannot be applied; the message tells it how to fix the call."""


@dataclass
class Block:
    label: str
    value: str
    limit: int
    position: int = 0


UPSERT_BLOCK = (
    "INSERT INTO core_blocks (agent_id, label, value, char_limit, position, updated_at)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT(agent_id, label) DO UPDATE SET value=excluded.value,"
    " char_limit=excluded.char_limit, position=excluded.position, updated_at=excluded.updated_at"
)


class CoreMemory:
    def __init__(self, blocks: list[Block]) -> None:
        ordered = sorted(blocks, key=lambda b: b.position)
        self.blocks: dict[str, Block] = {b.label: b for b in ordered}

    def labels(self) -> list[str]:
        return list(self.blocks)

    def get(self, label: str) -> Block:
        try:
            return self.blocks[label]
        except KeyError:
            known = ", ".join(repr(name) for name in self.blocks)
            raise CoreMemoryError(
                f"There is no core memory block named {label!r}. Blocks: {known}."
            ) from None

    def _set(self, block: Block, value: str) -> None:
        if len(value) > block.limit:
            raise CoreMemoryError(
                f"Edit failed: the {block.label!r} block would hold {len(value)} characters but"
                f" its limit is {block.limit}. Shorten or condense the block first (use"
                " core_memory_replace), or move details to archival memory."
            )
        block.value = value

    def append(self, label: str, content: str) -> str:
        block = self.get(label)
        content = content.strip()
        if not content:
            raise CoreMemoryError("Nothing to append: 'content' is empty.")
        new_value = f"{block.value}\n{content}" if block.value else content
        self._set(block, new_value)
        return new_value

    def replace(self, label: str, old_content: str, new_content: str) -> str:
        block = self.get(label)
        if not old_content:
            raise CoreMemoryError(
                "'old_content' is empty. Quote the exact text to replace; to add text use"
                " core_memory_append."
            )
        if old_content not in block.value:
            raise CoreMemoryError(
                f"'old_content' was not found in the {label!r} block. It must match the block's"
                " text exactly (including case and punctuation); copy it from core memory."
            )
        new_value = block.value.replace(old_content, new_content)
        if not new_content:
            # Deleting a whole line leaves a blank one behind; tidy it so blocks stay compact.
            new_value = "\n".join(line for line in new_value.split("\n") if line.strip())
        self._set(block, new_value)
        return new_value

    def set(self, label: str, value: str) -> None:
        self._set(self.get(label), value)

    def add_block(self, label: str, value: str, limit: int) -> Block:
        position = max((b.position for b in self.blocks.values()), default=-1) + 1
        block = Block(label, "", limit, position)
        self._set(block, value)
        self.blocks[label] = block
        return block

    def render(self) -> str:
        """The blocks as tagged text. Their sizes are not in it (see `sizes`): an append then
        leaves everything before it unchanged, which a provider's prompt cache reuses."""
        parts = []
        for block in self.blocks.values():
            parts.append(
                f"<{block.label}>\n{neutralise(block.value)}\n</{block.label}>"  # can't close it
            )
        return "\n".join(parts)

    def sizes(self) -> str:
        return ", ".join(f"{b.label} {len(b.value)}/{b.limit}" for b in self.blocks.values())

    def snapshot(self) -> list[dict[str, object]]:
        return [
            {"label": b.label, "value": b.value, "limit": b.limit, "position": b.position}
            for b in self.blocks.values()
        ]

    @classmethod
    def from_snapshot(cls, data: list[dict[str, object]]) -> CoreMemory:
        return cls([
            Block(str(d["label"]), str(d["value"]), int(d["limit"]), int(d["position"]))  # type: ignore[call-overload]
            for d in data
        ])

    def save_statements(self, agent_id: str, updated_at: str) -> list[Statement]:
        statements: list[Statement] = [
            (
                "DELETE FROM core_blocks WHERE agent_id=? AND label NOT IN"
                f" ({','.join('?' * len(self.blocks))})",
                (agent_id, *self.blocks),
            )
        ]
        statements += [
            (UPSERT_BLOCK, (agent_id, b.label, b.value, b.limit, b.position, updated_at))
            for b in self.blocks.values()
        ]
        return statements
