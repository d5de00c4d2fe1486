"""`Toolbox`: an agent's `unified_tools` checked, and built into the tools of one turn."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.files.lookup import LookupHit, lookup
from kaiwa.knowledge.search import KnowledgeSearch
from kaiwa.llm import ChatMessage, ModelError, ModelRegistry, ModelRequest
from kaiwa.llm.registry import UnknownModelError
from kaiwa.llm.text import detect_language
from kaiwa.runtime.agent import AgentRun, Collector, run_agent
from kaiwa.runtime.tools.base import Tool, ToolContext, ToolFailure, ToolOutput
from kaiwa.runtime.tools.call_agent import CallAgentTool, Callee
from kaiwa.runtime.tools.fetch import Fetcher, FetchTool
from kaiwa.runtime.tools.form import FormSchemaError, FormTool, form_fields
from kaiwa.runtime.tools.lookup import Lookup, LookupTool
from kaiwa.runtime.tools.retrieve import RetrieveTool
from kaiwa.runtime.tools.search_web import SearchWebTool, WebSearch
from kaiwa.runtime.usage import UsageMeter
from kaiwa.store import agents

logger = logging.getLogger(__name__)


def chat_lookup(read_sessions: async_sessionmaker[AsyncSession]) -> Lookup:
    """The `lookup` backend: the chat's earlier messages and files, read in a session of its
    own."""

    async def run(context: ToolContext, query: str, limit: int) -> Sequence[LookupHit]:
        async with read_sessions() as session:
            return await lookup(
                session,
                chat_id=context.chat_id,
                query=query,
                before_message_id=context.user_message_id or None,
                file_uuids=context.attachments,
                limit=limit,
            )

    return run


class ToolConfigError(ValueError):
    """An agent's `unified_tools` cannot run here; the message names the tool and why."""


@dataclass(frozen=True, slots=True)
class Backends:
    """What the tools run on; a tool whose backend is missing is not available."""

    knowledge: KnowledgeSearch | None = None
    web_search: WebSearch | None = None
    web_search_results: int = 5
    fetcher: Fetcher | None = None
    lookup: Lookup | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_rounds: int = 8
    tool_timeout: float = 60.0
    max_depth: int = 3


class Toolbox:
    def __init__(
        self,
        *,
        read_sessions: async_sessionmaker[AsyncSession],
        models: ModelRegistry,
        backends: Backends,
        limits: Limits | None = None,
    ) -> None:
        self._read_sessions = read_sessions
        self._models = models
        self.backends = backends
        self.limits = limits or Limits()

    def check(self, unified_tools: Sequence[Mapping[str, Any]]) -> None:
        """Raise `ToolConfigError` if any tool cannot run on this server as configured."""
        for index, config in enumerate(unified_tools):
            where = f"unified_tools[{index}]"
            kind = config.get("type")
            if kind == "web_search" and self.backends.web_search is None:
                raise ToolConfigError(
                    f"{where}: web_search is not available because no web search provider is "
                    "configured (set web_search.provider to searxng, brave or tavily)"
                )
            if kind == "fetch_web_content" and self.backends.fetcher is None:
                raise ToolConfigError(f"{where}: fetch_web_content is not available here")
            if kind == "knowledge_base" and self.backends.knowledge is None:
                raise ToolConfigError(f"{where}: knowledge bases are not available here")
            if kind == "lookup" and self.backends.lookup is None:
                raise ToolConfigError(f"{where}: lookup is not available here")
            if kind == "request_form":
                try:
                    form_fields(config.get("custom_form_schema") or {})
                except FormSchemaError as exc:
                    raise ToolConfigError(f"{where}.{exc}") from None

    async def tools_for(
        self,
        unified_tools: Sequence[Mapping[str, Any]],
        context: ToolContext,
        *,
        forms: bool = True,
    ) -> dict[str, Tool]:
        """The tools of one turn, by the name the model calls them. `forms=False` leaves out
        `request_form` (a called agent cannot pause its caller's turn)."""
        self.check(unified_tools)
        backends = self.backends
        tools: list[Tool] = []
        kb_ids: list[str] = []
        domains: list[str] = []
        searches = False
        callees: list[str] = []
        instructions: dict[str, str] = {}
        for config in unified_tools:
            kind = config.get("type")
            if kind == "knowledge_base":
                kb_ids.extend(str(kb) for kb in config.get("knowledge_base_ids") or ())
            elif kind == "web_search":
                searches = True
                domains.extend(str(domain) for domain in config.get("domains") or ())
            elif kind == "fetch_web_content" and backends.fetcher is not None:
                tools.append(FetchTool(backends.fetcher))
            elif kind == "lookup" and backends.lookup is not None:
                tools.append(LookupTool(backends.lookup))
            elif kind == "request_form" and forms:
                tools.append(FormTool(config.get("custom_form_schema") or {}))
            elif kind == "call_agent":
                agent_id = str(config.get("agent_id"))
                callees.append(agent_id)
                instructions[agent_id] = str(config.get("invocation_instruction") or "")
        if kb_ids and backends.knowledge is not None:
            tools.insert(0, RetrieveTool(backends.knowledge, list(dict.fromkeys(kb_ids))))
        if searches and backends.web_search is not None:
            search = SearchWebTool(
                backends.web_search,
                domains=list(dict.fromkeys(domains)),
                max_results=backends.web_search_results,
            )
            tools.append(search)
        if callees:
            found = await self._callees(context.workspace_id, callees, instructions)
            if found:
                tools.append(CallAgentTool(found, self._run_callee))
        return {tool.tool_name: tool for tool in tools}

    async def _callees(
        self, workspace_id: str, agent_ids: list[str], instructions: dict[str, str]
    ) -> list[Callee]:
        out = []
        async with self._read_sessions() as session:
            for agent_id in dict.fromkeys(agent_ids):
                agent = await agents.get_agent(session, workspace_id, agent_id)
                version = await agents.published_version(session, agent) if agent else None
                if version is None:
                    logger.warning("call_agent: agent %s has no published version", agent_id)
                    continue
                name = str(version.snapshot.get("name") or agent_id)
                out.append(Callee(agent_id, name, instructions.get(agent_id, "")))
        return out

    async def _run_callee(self, callee: Callee, question: str, context: ToolContext) -> ToolOutput:
        if callee.agent_id in context.agent_path:
            raise ToolFailure(f"calling {callee.name} again would make a cycle of agents")
        if len(context.agent_path) > self.limits.max_depth:
            raise ToolFailure(f"agents may call agents at most {self.limits.max_depth} levels deep")
        async with self._read_sessions() as session:
            agent = await agents.get_agent(session, context.workspace_id, callee.agent_id)
            version = await agents.published_version(session, agent) if agent else None
        if version is None:
            raise ToolFailure(f"{callee.name} has no published version")
        snapshot = version.snapshot
        try:
            model = self._models.get(snapshot["llm_model"])
        except UnknownModelError as exc:
            raise ToolFailure(f"{callee.name} cannot run: {exc}") from None
        inner = replace(
            context,
            agent_id=callee.agent_id,
            message=question,
            language=detect_language(question),
            agent_path=(*context.agent_path, callee.agent_id),
        )
        try:
            tools = await self.tools_for(snapshot.get("unified_tools") or [], inner, forms=False)
        except ToolConfigError as exc:
            raise ToolFailure(f"{callee.name} cannot run: {exc}") from None
        meter = UsageMeter()
        collector = Collector()
        run = AgentRun(
            model=model,
            request=ModelRequest(
                messages=[ChatMessage("user", question)],
                system=snapshot.get("system_prompt") or None,
                settings=dict((snapshot.get("meta") or {}).get("model_settings") or {}),
            ),
            tools=tools,
            context=inner,
            sink=collector,
            meter=meter,
            max_rounds=self.limits.max_rounds,
            tool_timeout=self.limits.tool_timeout,
            watch=context.watch,
        )
        try:
            await run_agent(run)
        except ModelError as exc:
            raise ToolFailure(f"{callee.name} failed: {exc.message}") from None
        answer = collector.text.strip()
        data = {
            "agent_id": callee.agent_id,
            "agent": callee.name,
            "answer": answer,
            "steps": collector.steps,
        }
        return ToolOutput(
            data=data, text=answer or f"{callee.name} gave no answer.", usage=meter.total()
        )
