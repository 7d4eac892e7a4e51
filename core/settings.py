"""Configuration: a TOML file plus environment overrides, validated with pydantic.

File sections: ``[hub]``, ``[connectors.<name>]``, ``[routes]``, ``[ownership]``,
``[journeys.<name>]`` (each journey's ``enabled``, ``sla_s`` and its own options), ``[kpis]``
(the business SLAs the console counts breaches of) and ``[topology]`` (which connector plays billing,
the ERP, ... when several of a kind are configured). Any string value may reference an environment
variable as ``${NAME}``. ``CROSSLEDGER_CONFIG`` names the file when ``--config`` is not given;
``CROSSLEDGER_BROKER``, ``CROSSLEDGER_STORE`` and ``CROSSLEDGER_API_TOKEN`` override ``[hub] broker``,
``store`` and ``api_token``. A relative ``sqlite:///`` path in the file is taken from the file's
folder. A connector is enabled by having a ``[connectors.<name>]`` section; its keys are validated
by that connector's own settings model.

Errors are :class:`ConfigError` with one readable line; secrets are never echoed.
"""

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_CONFIG = "CROSSLEDGER_CONFIG"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


class HubSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Defaults go in ``Field(default=...)`` by keyword: a type checker reads only that one as the
    # field's default (PEP 681), so ``HubSettings()`` type-checks.
    broker: str = "memory"
    store: str = "sqlite:///crossledger.db"
    namespace: str = "crossledger"
    api_token: SecretStr | None = None
    max_retries: int = Field(default=8, ge=0)
    min_backoff_ms: int = Field(default=500, ge=1)
    max_backoff_ms: int = Field(default=300_000, ge=1)
    max_age_s: int = Field(default=7 * 86400, ge=1)
    time_limit_s: int = Field(default=60, ge=1)
    circuit_threshold: int = Field(default=3, ge=1)
    circuit_cooldown_s: float = Field(default=2.0, gt=0)
    # How long a delivery may hold its entity's lease; a crashed worker's leases free after this.
    lease_ttl_s: float = Field(default=90.0, gt=0)
    redis_heartbeat_timeout_ms: int = Field(default=60_000, ge=1000)
    # Per million Redis commands: how often a worker sweeps dead workers' unacked messages back.
    redis_maintenance_chance: int = Field(default=1000, ge=1, le=1_000_000)
    # How long a broker command keeps retrying a lost Redis connection before the error surfaces:
    # a Redis restarted within it is invisible to the workers. While Redis is down every broker
    # command waits this long, a webhook's enqueue included (then 503).
    redis_retry_s: float = Field(default=3.0, ge=0)
    # A message sent and not settled (handled, retried or dead-lettered) this long after it was
    # due is sent again by the recovery sweep: the broker lost it, or a worker holds it for good.
    redrive_after_s: float = Field(default=300.0, gt=0)
    worker_threads: int = Field(default=8, ge=1)
    # A Redis worker finding a queue empty looks again after a wait that doubles, up to this long
    # (Dramatiq's worker timeout, 1,000 ms by its default). Each message waits out up to one such
    # gap per queue it passes (ingest, then deliver), so this bounds the latency at low load; lower
    # costs more polls of an idle broker (each queue's consumer, at most 1000/this a second).
    worker_idle_poll_ms: int = Field(default=100, ge=10, le=60_000)
    # On SIGTERM or SIGINT a process stops taking work and has this long to finish what it holds;
    # what is unfinished then stays recorded in flight and is sent again (see Durability).
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    # How often the scheduler asks each pull system (NetSuite) for its changes.
    poll_interval_s: float = Field(default=30.0, gt=0)
    # How often the scheduler runs a reconciliation (docs/reconciliation.md); None: only on demand.
    reconcile_interval_s: float | None = Field(default=None, gt=0)
    sentry_dsn: SecretStr | None = None
    # How long the HTTP edge waits for a request's body; a client that stalls mid-body gets a 408.
    body_timeout_s: float = Field(default=10.0, gt=0)
    # `serve` on a non-loopback address without an api_token exposes /v1 to the network: refused
    # unless this says it is meant (or `--allow-open` is given).
    allow_open: bool = False

    @field_validator("broker", "store")
    @classmethod
    def _redis_database_is_a_number(cls, url: str) -> str:
        """redis-py reads ``redis://host/notanumber`` as database 0 without a word: refuse it."""
        if url.startswith(("redis://", "rediss://")):
            parts = urlsplit(url)
            database = [parts.path.strip("/"), *parse_qs(parts.query).get("db", [])]
            if any(value and not value.isdigit() for value in database):
                raise ValueError(f"the Redis database in {masked(url)} must be a number (0, 1, ...)")
        return url

    @model_validator(mode="after")
    def _lease_outlives_a_delivery(self) -> "HubSettings":
        if self.lease_ttl_s <= self.time_limit_s:
            raise ValueError(f"lease_ttl_s ({self.lease_ttl_s}) must exceed time_limit_s ({self.time_limit_s}): "
                             "a delivery must not outlive the lease that serializes it")
        if self.redrive_after_s <= self.time_limit_s:
            raise ValueError(f"redrive_after_s ({self.redrive_after_s}) must exceed time_limit_s "
                             f"({self.time_limit_s}): a message still being worked on must not be sent again")
        return self


class KpiSettings(BaseModel):
    """``[kpis]``: the business SLAs whose breaches the console's KPIs page counts."""

    model_config = ConfigDict(extra="forbid")

    # An invoice not in the ERP this long after it reached the hub is a breach (delivered late, or not yet).
    invoice_posted_within_s: float = Field(default=15 * 60.0, gt=0)
    # A payment not reflected in the support desk's entitlements this long after its journey started
    # (a suspended customer's reinstatement) is a breach.
    payment_entitled_within_s: float = Field(default=5 * 60.0, gt=0)


class OwnershipEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owners: list[str]
    on_violation: str = Field(default="strip", pattern="^(strip|reject)$")


OwnershipKey = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+$")]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hub: HubSettings = HubSettings()
    connectors: dict[str, dict[str, Any]] = {}
    routes: dict[str, list[str]] = {}
    ownership: dict[OwnershipKey, OwnershipEntry] = {}
    journeys: dict[str, dict[str, Any]] = {}
    kpis: KpiSettings = KpiSettings()
    # Which configured connector plays a system kind when several of it are configured
    # (``billing = "zuora"``): see core/hub/roles.py.
    topology: dict[str, str] = {}


def masked(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (mode 0600, also when it existed): it holds secrets."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _anchored(store: str, folder: Path) -> str:
    """A relative ``sqlite:///`` path taken from the config file's folder, not the current directory:
    the same file must name the same database wherever the command runs."""
    path = store.removeprefix("sqlite:///")
    if not store.startswith("sqlite:///") or path in ("", ":memory:") or Path(path).is_absolute():
        return store
    return f"sqlite:///{(folder / path).resolve()}"


def _expand(value: Any, where: str, environ: dict[str, str]) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where} references ${{{name}}}, which is not set in the environment")
            return environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, f"{where}.{key}", environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, where, environ) for item in value]
    return value


def _normalize_ownership(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept the short form ``"customer.profile" = ["crm"]`` as well as the table form."""
    return {key: {"owners": value} if isinstance(value, list) else value for key, value in raw.items()}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"


def load_settings(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read, expand, override and validate the configuration."""
    environ = dict(os.environ) if environ is None else environ
    path = path or environ.get(ENV_CONFIG)
    raw: dict[str, Any] = {}
    if path:
        file = Path(path)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {file} cannot be read: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {file} is not valid TOML: {error}") from None
        raw = _expand(raw, "config", environ)
    if not isinstance(raw.get("hub", {}), dict):
        raise ConfigError("[hub] must be a table of settings")
    hub = dict(raw.get("hub", {}))
    store = hub.get("store", HubSettings.model_fields["store"].default)
    if path and isinstance(store, str):
        hub["store"] = _anchored(store, Path(path).resolve().parent)
    for key, variable in (("broker", "CROSSLEDGER_BROKER"), ("store", "CROSSLEDGER_STORE"),
                          ("api_token", "CROSSLEDGER_API_TOKEN")):
        if environ.get(variable):
            hub[key] = environ[variable]
    raw["hub"] = hub
    if isinstance(raw.get("ownership"), dict):
        raw["ownership"] = _normalize_ownership(raw["ownership"])
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid configuration: {_describe(error)}") from None


def connector_settings(model: type[BaseModel], name: str, raw: dict[str, Any]) -> BaseModel:
    """Validate one ``[connectors.<name>]`` section with the connector's model."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid [connectors.{name}]: {_describe(error)}") from None
