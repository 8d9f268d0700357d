"""Settings: a YAML file (``--config``) overridden by ``LAKEHOUSE_*`` environment variables.

Precedence, highest first: explicit overrides (CLI flags such as ``--root``), environment
(``LAKEHOUSE_ROOT``, nested keys with ``__``: ``LAKEHOUSE_WRITER__MAX_ROWS=5000``), files in
``$LAKEHOUSE_SECRETS_DIR`` (one per setting, named like the variable without its prefix:
``storage_options__aws_secret_access_key``), the YAML file, then the embedded defaults below
(mirrored by ``config/local.yaml``).

Secrets (a storage option whose name names one, :func:`is_secret`) are held as
:class:`pydantic.SecretStr`: ``repr``, ``model_dump`` and ``lakehouse config show`` print
``**********``, and configuration errors never quote them. Only the catalog unwraps them, where it
hands the options to delta-rs and pyarrow.
"""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from crypto_lakehouse.durations import format_duration, parse_duration
from crypto_lakehouse.errors import ConfigError

__all__ = [
    "REDACTED",
    "ApiLimits",
    "ApiSettings",
    "BarSettings",
    "BookSettings",
    "Duration",
    "GoldSettings",
    "LoopbackSettings",
    "MaintenanceSettings",
    "QualitySettings",
    "ScaleSettings",
    "Settings",
    "SilverSettings",
    "StorageOptions",
    "StreamEntry",
    "StreamSettings",
    "WriterSettings",
    "is_secret",
    "load_settings",
    "parse_shard",
]

REDACTED = "**********"
"""What a secret prints as (pydantic's ``SecretStr`` placeholder)."""

# A setting or storage option whose name contains one of these (any case) holds a secret...
_SECRET_WORDS = ("secret", "token", "password", "passwd", "pwd", "key", "credential")
# ...unless it ends so: it names a key, it is not one (aws_access_key_id, aws_sse_kms_key_id)
_NOT_SECRET_SUFFIX = "key_id"


def is_secret(name: str) -> bool:
    """Whether the setting or storage option ``name`` holds a secret, decided by its name alone
    (so that options delta-rs adds later are covered): it contains ``secret``, ``token``,
    ``password``, ``passwd``, ``pwd``, ``key`` or ``credential``, in any case, and does not end in
    ``key_id``. So ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AZURE_STORAGE_ACCOUNT_KEY``,
    ``AZURE_STORAGE_SAS_KEY``, ``GOOGLE_SERVICE_ACCOUNT_KEY`` are secrets; ``AWS_ACCESS_KEY_ID``
    (an identifier AWS itself logs; it tells which credentials are in use), ``AWS_REGION`` and
    ``AWS_ENDPOINT_URL`` are not. It errs towards hiding: a few harmless values (a token file's
    path, ``AWS_SSE_BUCKET_KEY_ENABLED``) print as ``**********`` too."""
    lower = name.lower()
    return any(word in lower for word in _SECRET_WORDS) and not lower.endswith(_NOT_SECRET_SUFFIX)


def _hide_secrets(options: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
    """Storage options with every secret (by name, :func:`is_secret`) as a ``SecretStr``."""
    hidden: dict[str, str | SecretStr] = {}
    for name, value in options.items():
        if isinstance(value, str) and is_secret(name):
            value = SecretStr(value)
        if isinstance(value, SecretStr) and value.get_secret_value() == REDACTED:
            raise ValueError(
                f"{name} is {REDACTED}, what `lakehouse config show` prints for a secret: give the secret itself"
            )
        hidden[name] = value
    return hidden


def _option_text(value: Any) -> str | SecretStr:
    if isinstance(value, str | SecretStr):
        return value
    raise ValueError(f'a storage option is text: quote it in YAML ("true", "443"), got a {type(value).__name__}')


StorageOptions = Annotated[
    dict[str, Annotated[str | SecretStr, PlainValidator(_option_text)]], AfterValidator(_hide_secrets)
]
"""Object-store options for delta-rs and pyarrow (``AWS_REGION``, ``AWS_SECRET_ACCESS_KEY``, ...):
text; the secrets among them (:func:`is_secret`) held as ``SecretStr``."""


def _split_list(value: Any) -> Any:
    """A list given as text (an environment variable): JSON (``["1m","5m"]``) or comma-separated
    (``1m,5m``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg}); or write the items comma-separated") from None
    return [item.strip() for item in text.split(",") if item.strip()]


# a list setting: YAML list, JSON list or comma-separated text (environment variables)
TextList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def _to_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"durations need a unit: write '{value}s' or '{value}ms', not {value}")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str),
]
"""A positive duration written Polars-style in config files (``"500ms"``, ``"1m"``, ``"4h"``)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LoopbackSettings(_Section):
    """The loopback Binance-protocol exchange (``lakehouse exchange serve``, demo, tests)."""

    exchange: str = "BINANCE_FUTURES"
    host: str = "127.0.0.1"
    ws_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    rest_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    symbols: TextList = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    seed: int = 7
    rate: float = Field(2_000.0, gt=0, description="synthetic messages per second, all symbols")


class StreamEntry(_Section):
    """One venue of a ``streams:`` list: its symbols (cryptofeed's names), channels (None: the
    venue's default channels, ``lakehouse venues``) and endpoints (None: the venue's own)."""

    exchange: str
    symbols: TextList
    channels: Annotated[list[str] | None, NoDecode, BeforeValidator(_split_list)] = None
    ws_endpoint: str | None = None
    rest_endpoint: str | None = None
    ca_file: str | None = Field(None, description="certificate to trust for a wss:// endpoint")

    @field_validator("symbols")
    @classmethod
    def _some_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one symbol")
        return value


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"``, shard I (0-based) of N, as ``(I, N)``; a ValueError saying what is accepted."""
    m = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if m is None:
        raise ValueError(f"a shard is I/N, this process's index I (from 0) of N shards, e.g. 0/4; got {text!r}")
    index, count = int(m[1]), int(m[2])
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r} does not exist: of N shards, I is 0 to N-1 (e.g. 0/4, 1/4, 2/4, 3/4)")
    return index, count


class StreamSettings(_Section):
    """What the streaming writer subscribes to: ``exchanges`` x ``symbols`` x ``channels``, or
    a ``streams:`` list of venues with their own symbols and channels (then those three are
    not used). With ``shard: I/N``, only the (exchange, symbol) pairs that hash to shard I
    (``ingest.shards``): N processes with the same settings split them."""

    exchanges: TextList = Field(default_factory=lambda: ["BINANCE_FUTURES"])
    symbols: TextList = Field(default_factory=lambda: ["BTC-USDT-PERP", "ETH-USDT-PERP"])
    channels: TextList = Field(
        default_factory=lambda: ["trades", "l2_book", "ticker", "funding", "liquidations", "candles"]
    )
    ws_endpoint: str | None = Field(None, description="wss:// base; None = the exchange's own")
    rest_endpoint: str | None = Field(None, description="http(s):// base; None = the exchange's own")
    streams: list[StreamEntry] = Field(
        default_factory=list, description="several venues in one process, each with its own symbols and channels"
    )
    shard: str | None = Field(
        None, description="I/N: this process streams shard I (from 0) of N; None = every pair (not sharded)"
    )

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        index, count = parse_shard(value)
        return f"{index}/{count}"


class WriterSettings(_Section):
    """Bronze writer buffering: a table flushes when it holds ``max_rows`` or is ``max_age`` old;
    when its commits slow down or conflict, both grow together up to ``max_age_limit``
    (``ingest.pacing``: adaptive batch age)."""

    id: str | None = Field(None, description="writer id, stable across restarts; None = host name")
    max_rows: int = Field(50_000, gt=0)
    max_age: Duration = parse_duration("1s")
    max_age_limit: Duration = Field(
        parse_duration("10s"),
        description="the longest the adaptive batch age grows to; at or below max_age: a fixed age",
    )
    commit_duty: float = Field(
        0.25, gt=0, le=1, description="share of a batch's age its commit may take before the age grows"
    )
    retries: int = Field(5, ge=0)
    retry_backoff: Duration = parse_duration("200ms")
    spool_dir: str | None = Field(
        None, description="where failed batches wait and live writers register; None = the root's state directory"
    )
    live_port: int | None = Field(0, ge=0, le=65535, description="live-buffer endpoint; 0 = a free port, None = off")
    compact_every: int = Field(50, ge=0, description="merge a table's small files every N commits; 0 = never")


class SilverSettings(_Section):
    """promote-silver: validation bounds, gap thresholds and where backfill asks."""

    max_future_skew: Duration = parse_duration("10s")
    funding_gap: Duration = parse_duration("1m")
    symbols: Annotated[list[str] | None, NoDecode, BeforeValidator(_split_list)] = Field(
        None, description="allow-list of symbols; None: any well-formed one"
    )
    backfill: bool = True
    backfill_max_trades: int = Field(1_000_000, gt=0, description="trade ids fetched per gap per run")
    backfill_rest: dict[str, str] = Field(
        default_factory=dict, description="exchange -> REST base for ccxt; missing: the exchange's own"
    )


def _keep_forever(*layers: str) -> dict[str, timedelta | None]:
    return {layer: None for layer in layers}


class MaintenanceSettings(_Section):
    """Per-layer vacuum horizon and data retention (None: keep forever). Tags are always kept.

    A layer's vacuum horizon may not exceed its tables' ``delta.deletedFileRetentionDuration``
    (storage.TABLE_PROPERTIES; vacuum refuses): files removed longer ago are no longer listed
    in checkpoints. One duration for all layers is accepted too.

    The earlier names of the two settings, ``vacuum_retention`` and ``retention``, are still read."""

    vacuum_horizon: dict[str, Duration] = Field(
        default_factory=lambda: {
            "bronze": parse_duration("1h"),
            "silver": parse_duration("7d"),
            "gold": parse_duration("7d"),
        },
        validation_alias=AliasChoices("vacuum_horizon", "vacuum_retention"),
    )
    data_retention: dict[str, Duration | None] = Field(
        default_factory=lambda: _keep_forever("bronze", "silver", "gold"),
        validation_alias=AliasChoices("data_retention", "retention"),
    )

    @field_validator("vacuum_horizon", mode="before")
    @classmethod
    def _one_horizon_for_all(cls, value: object) -> object:
        if isinstance(value, (str, int, float, timedelta)):
            return {layer: value for layer in ("bronze", "silver", "gold")}
        return value

    def horizon_of(self, table: str) -> timedelta:
        """The vacuum horizon of ``table``'s layer (7 days for a layer not configured)."""
        return self.vacuum_horizon.get(table.split(".")[0], timedelta(days=7))

    def data_retention_of(self, table: str) -> timedelta | None:
        """How long ``table``'s layer keeps data (None: forever, also for a layer not configured)."""
        return self.data_retention.get(table.split(".")[0])


class BarSettings(_Section):
    """Thresholds of the information-driven bars (gold.info_bars, docs/gold.md), per kind: a map
    of ``default``, ``SYMBOL`` (on any exchange) or ``EXCHANGE:SYMBOL`` to the threshold, the
    most specific key winning; a null threshold turns the kind off for that key. A kind whose map
    is empty (the default) is off. ``tick``: trades per bar; ``volume``: base volume per bar;
    ``dollar``: quote volume (sum of price * amount) per bar."""

    tick: dict[str, Annotated[int, Field(gt=0)] | None] = Field(default_factory=dict)
    volume: dict[str, Annotated[float, Field(gt=0)] | None] = Field(default_factory=dict)
    dollar: dict[str, Annotated[float, Field(gt=0)] | None] = Field(default_factory=dict)

    def threshold(self, kind: str, exchange: str, symbol: str) -> float | None:
        """The threshold of ``kind`` bars for (``exchange``, ``symbol``); None: that kind is off."""
        table: dict[str, Any] = getattr(self, kind)
        for key in (f"{exchange}:{symbol}", symbol, "default"):
            if key in table:
                value = table[key]
                return None if value is None else float(value)
        return None

    def enabled(self) -> bool:
        """Whether any kind has a threshold for any symbol."""
        return any(v is not None for table in (self.tick, self.volume, self.dollar) for v in table.values())


class BookSettings(_Section):
    """gold.book_snapshots and gold.quotes (docs/gold.md): the top ``depth`` levels of each book
    at the end of every ``interval`` (a duration that divides a day: 100ms, 1s, 1m, ...), emitted
    where the book changed within the depth, or every interval with ``forward_fill``; and
    gold.microstructure per ``stats_interval``."""

    depth: int = Field(10, ge=1, le=1000, description="levels per side in each snapshot")
    interval: Duration = Field(parse_duration("1s"), description="snapshot and quote interval; divides a day")
    forward_fill: bool = Field(False, description="emit every interval, not only those where the book changed")
    stats_interval: Duration = Field(parse_duration("1m"), description="gold.microstructure interval; divides a day")

    @field_validator("interval", "stats_interval")
    @classmethod
    def _divides_a_day(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or timedelta(days=1) % value:
            raise ValueError(f"book interval {format_duration(value)}: give a duration that divides a day (1s, 1m)")
        return value


class GoldSettings(_Section):
    """Gold OHLCV intervals (any fixed Polars-style duration), information-driven bars and the
    book tables (:class:`BookSettings`)."""

    intervals: Annotated[list[Duration], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=lambda: [parse_duration(d) for d in ("1s", "1m", "5m", "15m", "1h", "4h", "1d")]
    )
    bars: BarSettings = Field(default_factory=BarSettings)
    book: BookSettings = Field(default_factory=BookSettings)


class QualitySettings(_Section):
    """Cross-venue and anomaly checks of gold.anomalies (docs/quality.md): thresholds on 1 m bars."""

    divergence_bps: float = Field(
        50.0, gt=0, description="a 1 m close this far (bps) from the cross-venue median is recorded"
    )
    min_venues: int = Field(2, ge=2, description="venues an asset needs in a minute for the divergence check")
    spike_deviations: float = Field(
        8.0, gt=0, description="a return or volume this many robust deviations (1.4826 * MAD) out is a spike"
    )
    spike_window: int = Field(60, ge=5, le=1440, description="the preceding 1 m bars the median and MAD are of")


class ScaleSettings(_Section):
    """Where the heavy jobs (promote silver and gold, backfill, archive import) run their groups
    of (exchange, symbol, day): ``none`` in this process as one job, ``local`` on a Dask LocalCluster of ``workers``
    processes started for the job, or a running Dask scheduler's address (``tcp://host:8786``).
    Workers write data files; the job commits them once (docs/scaling.md)."""

    runner: str = Field("none", description="none | local | a Dask scheduler address (tcp://host:8786)")
    workers: int = Field(2, ge=1, description="LocalCluster worker processes (runner: local)")
    threads_per_worker: int = Field(1, ge=1, description="threads per LocalCluster worker (runner: local)")

    @field_validator("runner")
    @classmethod
    def _runner(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("none", "local"):
            return value.lower()
        if "://" not in value:
            raise ValueError(f"runner {value!r}: give none, local or a Dask scheduler address like tcp://host:8786")
        return value


class ApiLimits(_Section):
    """What one request of ``lakehouse api`` may cost (docs/service.md): a query past
    ``timeout_s`` is interrupted, one past ``max_rows`` rows or ``max_bytes`` bytes of response
    is cut off; each query's DuckDB gets ``memory_limit`` and ``threads``; at most
    ``max_concurrent`` queries run at once (more get 429)."""

    timeout_s: float = Field(30.0, gt=0, description="seconds a query may run, streaming included")
    max_rows: int = Field(1_000_000, gt=0, description="rows one response may hold")
    max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="bytes one response may hold (encoded)")
    memory_limit: str = Field("1GB", description="DuckDB memory_limit of each query (x max_concurrent in all)")
    threads: int = Field(1, ge=1, description="DuckDB threads of each query")
    max_concurrent: int = Field(4, ge=1, description="queries running at once; more are refused with 429")


class ApiSettings(_Section):
    """The HTTP query service, ``lakehouse api`` (docs/service.md)."""

    host: str = "127.0.0.1"
    port: int = Field(8400, ge=0, le=65535, description="0 picks a free port")
    tls_cert: str | None = Field(None, description="PEM certificate: serve HTTPS (with tls_key)")
    tls_key: SecretStr | None = Field(
        None, description="path of tls_cert's PEM private key (named like a secret: held and printed as one)"
    )
    freshness: Duration = Field(
        parse_duration("2m"), description="a venue whose writer was last heard of longer ago is stale in /health"
    )
    limits: ApiLimits = Field(default_factory=ApiLimits)
    audit_flush: Duration = Field(parse_duration("1s"), description="audit rows are appended in batches this often")
    audit_retention: Duration | None = Field(
        parse_duration("90d"), description="audit rows older than this are deleted; null = keep forever"
    )


class Settings(BaseSettings):
    """All settings of a lakehouse deployment."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    root: str = Field("./lakehouse_data", description="local path or s3://bucket/prefix")
    storage_options: StorageOptions = Field(
        default_factory=dict, description="delta-rs / object-store options; secrets among them held as SecretStr"
    )
    loopback: LoopbackSettings = Field(default_factory=LoopbackSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    silver: SilverSettings = Field(default_factory=SilverSettings)
    gold: GoldSettings = Field(default_factory=GoldSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _YAML_PATH.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(_SECRETS_DIR_VARIABLE)
        if secrets_dir:
            sources.append(_SecretsDir(settings_cls, Path(secrets_dir)))
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


_YAML_PATH: ContextVar[Path | None] = ContextVar("_YAML_PATH", default=None)

_SECRETS_DIR_VARIABLE = "LAKEHOUSE_SECRETS_DIR"


class _SecretsDir(PydanticBaseSettingsSource):
    """Settings from the files of a directory (``$LAKEHOUSE_SECRETS_DIR``), one per setting,
    named like its ``LAKEHOUSE_*`` variable less the prefix, any case
    (``storage_options__aws_secret_access_key``), holding its value (surrounding whitespace
    stripped): how Kubernetes and Docker hand secrets over, and the secret is in no environment.
    Hidden entries (a Kubernetes secret volume's ``..data``) and directories are skipped."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path) -> None:
        super().__init__(settings_cls)
        self.directory = directory

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole directory

    def __call__(self) -> dict[str, Any]:
        if not self.directory.is_dir():
            raise ConfigError(f"{_SECRETS_DIR_VARIABLE}={self.directory} is not a directory")
        values: dict[str, Any] = {}
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            *parents, leaf = path.name.lower().split("__")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{path}: {part} is set by another file of {self.directory} as a value")
            node[leaf] = path.read_text(encoding="utf-8").strip()
        return values


def load_settings(config: str | Path | None = None, /, **overrides: Any) -> Settings:
    """Load settings from ``config`` (YAML) + ``LAKEHOUSE_*`` env + ``overrides``.

    ``None`` values in ``overrides`` are ignored, so CLI flags can be passed straight through.
    Raises :class:`ConfigError` naming every bad key and its problem.
    """
    path = None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}")
    token = _YAML_PATH.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON where a map is expected
        raise ConfigError(_describe_env(exc)) from None
    finally:
        _YAML_PATH.reset(token)


def _describe_env(exc: SettingsError) -> str:
    """One line for a ``LAKEHOUSE_*`` variable pydantic-settings could not decode."""
    field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
    prefix = f"LAKEHOUSE_{field.upper()}"
    names = sorted(n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + "__"))
    shown = ", ".join(n if _may_hold_secrets(n) else f"{n}={os.environ[n]!r}" for n in names) or prefix + "*"
    return (
        f"environment variable {shown} is not valid: maps are JSON objects "
        f'(e.g. LAKEHOUSE_SILVER__BACKFILL_REST=\'{{"BINANCE_FUTURES": "http://127.0.0.1:9000"}}\'), '
        "lists are JSON or comma-separated"
    )


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" ({path})" if path else ""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        hidden = _may_hold_secrets(*err["loc"])
        got = "a value not shown: it may be a secret" if hidden else repr(_redacted(err.get("input")))
        lines.append(f"{key}: {msg} (got {got})")
    return f"invalid configuration{where}: " + "; ".join(lines)


def _may_hold_secrets(*names: str | int) -> bool:
    """Whether a value at this place (keys from the root, or a variable's name) may hold a
    secret, so that no error message quotes it: anything under ``storage_options``, or under
    a key that names a secret."""
    words = [w for n in names for w in str(n).lower().removeprefix("lakehouse_").split("__")]
    return bool(words) and (words[0] == "storage_options" or any(is_secret(w) for w in words))


def _redacted(value: Any) -> Any:
    """``value`` (what an error is about: a mistyped key's mapping, say) with every value under
    a key that names a secret replaced by the placeholder."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value
