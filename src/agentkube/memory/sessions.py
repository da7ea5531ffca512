"""Conversation sessions as pydantic-ai messages, over any :class:`StateStore`.

A client continues a conversation by passing its id; each run of the agent appends one turn (the
messages that run added). Loading returns the retained turns' messages in order, ready to be
``message_history`` for the next run.
"""

from __future__ import annotations

import uuid

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from agentkube.memory.state import StateStore, check_id


def new_conversation_id() -> str:
    return uuid.uuid4().hex


class Sessions:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def load(self, agent: str, conversation: str) -> list[ModelMessage]:
        messages: list[ModelMessage] = []
        for turn in await self.store.load_turns(agent, conversation):
            messages.extend(ModelMessagesTypeAdapter.validate_json(turn))
        return messages

    async def append(self, agent: str, conversation: str, messages: list[ModelMessage]) -> None:
        check_id("conversation", conversation)
        await self.store.append_turn(
            agent, conversation, ModelMessagesTypeAdapter.dump_json(messages)
        )

    async def forget(self, agent: str, conversation: str) -> None:
        await self.store.delete_session(agent, conversation)
