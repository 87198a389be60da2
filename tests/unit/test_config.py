"""The config generator (settings.py over config.py): flags, variables, file keys, precedence,
messages, and the reference in docs/configuration.md."""

import argparse
import re
from pathlib import Path

import pytest

from kittenfs import settings
from kittenfs.config import (
    WORKER_LIMITS,
    ClientConfig,
    ConfigError,
    JobOptions,
    MasterConfig,
    UpConfig,
    WorkerConfig,
)
from kittenfs.settings import DOCUMENTED, options, resolve

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"
SECRET = "s" * 32


def parse(cls: type, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, cls, file=True)
    return parser.parse_args(argv)


def config(cls: type, *argv: str, env: dict[str, str] | None = None) -> object:
    return resolve(cls, parse(cls, *argv), env or {})


def test_every_field_is_a_setting_with_a_unique_flag() -> None:
    for _, cls in DOCUMENTED:
        flags = [option.flag for option in options(cls)]
        assert len(flags) == len(set(flags)), cls
        for option in options(cls):
            assert option.rule.help, option.path
            assert re.fullmatch(r"--[a-z][a-z0-9-]*", option.flag), option.flag


@pytest.mark.parametrize("cls", [MasterConfig, WorkerConfig])
def test_each_flag_has_the_variable_of_its_name(cls: type) -> None:
    for option in options(cls):
        assert option.env[0] == "KITTENFS_" + option.flag[2:].replace("-", "_").upper()
        assert option.key == option.flag[2:]


def test_the_names_a_container_relies_on() -> None:
    master = {name for option in options(MasterConfig) for name in option.env}
    worker = {name for option in options(WorkerConfig) for name in option.env}
    client = {name for option in options(ClientConfig) for name in option.env}
    assert {
        "KITTENFS_PORT",
        "KITTENFS_HOST",
        "KITTENFS_DATA",
        "KITTENFS_ADVERTISE",
        "KITTENFS_REPLICAS",
        "KITTENFS_CLUSTER_SECRET_FILE",
        "KITTENFS_CLUSTER_SECRET",
        "KITTENFS_ADMIN_TOKEN",
    } <= master
    assert {"KITTENFS_MASTER", "KITTENFS_DATA", "KITTENFS_CLUSTER_SECRET"} <= worker
    assert {"KITTENFS_URL", "KITTENFS_TOKEN", "KITTENFS_CA"} == client


def test_defaults_are_the_dataclass_defaults() -> None:
    made = config(MasterConfig, "--data", "d")
    assert made == MasterConfig(data=Path("d"))
    assert config(UpConfig) == UpConfig()
    assert config(JobOptions) == JobOptions()
    assert config(ClientConfig) == ClientConfig()


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = tmp_path / "kittenfs.toml"
    file.write_text('[master]\nport = 4000\nreplicas = 2\nhost = "127.0.0.2"\n')
    env = {"KITTENFS_CONFIG": str(file), "KITTENFS_PORT": "5000", "KITTENFS_REPLICAS": "1"}
    made = config(MasterConfig, "--data", "d", "--port", "6000", env=env)
    assert isinstance(made, MasterConfig)
    assert (made.port, made.replicas, made.host, made.down_after) == (6000, 1, "127.0.0.2", 5.0)
    made = config(MasterConfig, "--data", "d", "--config", str(file))
    assert isinstance(made, MasterConfig)
    assert (made.port, made.replicas) == (4000, 2)


def test_a_required_setting_may_come_from_the_environment() -> None:
    made = config(WorkerConfig, env={"KITTENFS_MASTER": "http://m:3000", "KITTENFS_DATA": "w"})
    assert made == WorkerConfig(master="http://m:3000", data=Path("w"))
    with pytest.raises(ConfigError, match=r"^--master is required \(or KITTENFS_MASTER\)$"):
        config(WorkerConfig, "--data", "w")


def test_an_empty_variable_counts_as_unset() -> None:
    made = config(MasterConfig, "--data", "d", env={"KITTENFS_PORT": ""})
    assert isinstance(made, MasterConfig) and made.port == 3000


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "abc"], {}, "--port abc: must be an integer"),
        (["--port", "70000"], {}, "--port 70000: must be between 0 and 65535"),
        ([], {"KITTENFS_PORT": "70000"}, "KITTENFS_PORT=70000: must be between 0 and 65535"),
        ([], {"KITTENFS_REPLICAS": "0"}, "KITTENFS_REPLICAS=0: must be at least 1"),
        ([], {"KITTENFS_DOWN_AFTER": "nan"}, "KITTENFS_DOWN_AFTER=nan: must be a number"),
        ([], {"KITTENFS_VERBOSE": "maybe"}, "KITTENFS_VERBOSE=maybe: must be true or false"),
        ([], {"KITTENFS_ANONYMOUS": "all"}, "KITTENFS_ANONYMOUS=all: must be one of none, read"),
        ([], {"KITTENFS_ADVERTISE": "kfs:3000"}, "KITTENFS_ADVERTISE=kfs:3000: must be a URL"),
        (["--cache-bytes", "lots"], {}, "--cache-bytes lots: must be a size in bytes"),
        (["--max-uploads", "0"], {}, "--max-uploads 0: must be positive"),
        (["--tls-cert", "/nonexistent.pem"], {}, "--tls-cert /nonexistent.pem: must be an exist"),
        (["--cluster-secret-file", "/nonexistent"], {}, "--cluster-secret-file /nonexistent: No"),
        ([], {"KITTENFS_CLUSTER_SECRET": "short"}, "KITTENFS_CLUSTER_SECRET: a cluster secr"),
    ],
)
def test_a_bad_value_names_its_flag_or_variable_and_what_is_allowed(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as failure:
        config(MasterConfig, "--data", "d", *argv, env=env)
    assert str(failure.value).startswith(message), str(failure.value)
    assert "\n" not in str(failure.value)


def test_secrets_are_never_echoed() -> None:
    for argv, env in ((["--admin-token", "tooshort"], {}), ([], {"KITTENFS_ADMIN_TOKEN": "x1"})):
        with pytest.raises(ConfigError, match="at least 16 characters") as failure:
            config(MasterConfig, "--data", "d", *argv, env=env)
        assert "tooshort" not in str(failure.value) and "x1" not in str(failure.value)


def test_cross_field_rules_still_hold() -> None:
    with pytest.raises(ConfigError, match="reachable from the network"):
        config(MasterConfig, "--data", "d", "--host", "0.0.0.0")
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key"):
        config(MasterConfig, "--data", "d", "--tls-key", __file__)


def test_the_cluster_secret_comes_from_a_file_or_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    by_file = config(MasterConfig, "--data", "d", "--cluster-secret-file", str(secret))
    by_env = config(MasterConfig, "--data", "d", env={"KITTENFS_CLUSTER_SECRET": SECRET})
    by_env_file = config(
        MasterConfig, "--data", "d", env={"KITTENFS_CLUSTER_SECRET_FILE": str(secret)}
    )
    keys = [made.cluster_key for made in (by_file, by_env, by_env_file)]  # type: ignore[attr-defined]
    assert len({key.sign_request("GET", "/", 0) for key in keys}) == 1


def test_sizes_take_units_and_rates_are_megabytes() -> None:
    made = config(
        WorkerConfig,
        "--master",
        "http://m:3000",
        "--data",
        "w",
        "--inline-max",
        "32KiB",
        "--capacity-bytes",
        "1.5GB",
        "--verify-max",
        "1048576",
        "--scrub-rate",
        "2.5",
        env={"KITTENFS_CLONE_RATE": "10"},
    )
    assert isinstance(made, WorkerConfig)
    assert (made.inline_max, made.capacity, made.verify_max) == (32768, 1_500_000_000, 1 << 20)
    assert (made.scrub_rate, made.clone_rate) == (2.5e6, 10e6)


def test_a_nested_setting_keeps_the_others_of_its_process() -> None:
    made = config(WorkerConfig, "--master", "http://m:3000", "--data", "w", "--max-uploads", "8")
    assert isinstance(made, WorkerConfig)
    assert made.limits.uploads == 8
    assert made.limits.stream_buffer == WORKER_LIMITS.stream_buffer
    assert made.limits.uploads_per_client == WORKER_LIMITS.uploads_per_client


def test_booleans_from_flags_and_variables() -> None:
    assert config(MasterConfig, "--data", "d", env={"KITTENFS_VERBOSE": "yes"}).verbose  # type: ignore[attr-defined]
    made = config(MasterConfig, "--data", "d", "--no-verbose", env={"KITTENFS_VERBOSE": "1"})
    assert not made.verbose  # type: ignore[attr-defined]


def test_per_invocation_options_read_no_environment() -> None:
    assert all(not option.env for option in options(UpConfig))
    assert all(not option.env for option in options(JobOptions))
    made = config(UpConfig, env={"KITTENFS_PORT": "1234", "KITTENFS_DATA": "elsewhere"})
    assert made == UpConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[master]\nfrobnicate = 1\n", "[master] frobnicate: no such setting"),
        ("[master]\nport = [1, 2]\n", "[master] port: must be a single value"),
        ("[master]\nport = 'abc'\n", "[master] port = 'abc': must be an integer"),
        ("[master\n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_says_where(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "kittenfs.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(MasterConfig, "--data", "d", "--config", str(file))
    with pytest.raises(ConfigError, match="No such file"):
        config(MasterConfig, "--data", "d", "--config", str(tmp_path / "absent.toml"))


def test_a_config_file_reads_only_its_own_table(tmp_path: Path) -> None:
    file = tmp_path / "kittenfs.toml"
    file.write_text(
        '[master]\nport = 4000\n[worker]\nmaster = "http://m:4000"\ndata = "w"\n'
        "public-reads = true\nscrub-rate = 0\n"
    )
    made = config(WorkerConfig, "--config", str(file))
    assert made == WorkerConfig(master="http://m:4000", data=Path("w"), public_reads=True,
                                scrub_rate=0.0)  # fmt: skip


def test_up_takes_no_settings_from_a_config_file(tmp_path: Path) -> None:
    file = tmp_path / "kittenfs.toml"
    file.write_text("[up]\nworkers = 7\n")
    made = resolve(UpConfig, parse(UpConfig), {"KITTENFS_CONFIG": str(file)})
    assert made == UpConfig()


def test_help_shows_every_default_and_variable() -> None:
    for cls in (MasterConfig, WorkerConfig):
        parser = argparse.ArgumentParser(prog="kittenfs", formatter_class=_Wide)
        settings.add_flags(parser, cls)
        text = parser.format_help()
        for option in options(cls):
            assert option.flag in text
            assert f"env {option.env[0]}" in text, option.flag
            assert "``" not in text
    assert "(default 64 MiB; env KITTENFS_CACHE_BYTES)" in _help(MasterConfig)
    assert "(default 4; env KITTENFS_SCRUB_RATE)" in _help(WorkerConfig)
    assert "(required; env KITTENFS_DATA)" in _help(MasterConfig)


class _Wide(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=1000, max_help_position=1000)


def _help(cls: type) -> str:
    parser = argparse.ArgumentParser(prog="kittenfs", formatter_class=_Wide)
    settings.add_flags(parser, cls)
    return parser.format_help()


def test_module_constants_are_the_config_defaults() -> None:
    from kittenfs.master.garbage import REPLACED_GRACE
    from kittenfs.master.jobs.converge import DEFAULT_CONCURRENCY
    from kittenfs.master.jobs.gc import DEFAULT_GRACE
    from kittenfs.worker.blobstore import DEFAULT_INLINE_MAX, DEFAULT_VERIFY_MAX

    assert MasterConfig.replaced_grace == REPLACED_GRACE
    assert (JobOptions.grace, JobOptions.concurrency) == (DEFAULT_GRACE, DEFAULT_CONCURRENCY)
    assert (
        WorkerConfig.inline_max,
        WorkerConfig.verify_max,
    ) == (DEFAULT_INLINE_MAX, DEFAULT_VERIFY_MAX)


def test_docs_list_every_setting() -> None:
    """docs/configuration.md holds the generated reference; regenerate it with
    ``python -m kittenfs.settings docs/configuration.md``."""
    text = DOCS.read_text()
    begin, end = settings.GENERATED
    assert begin in text and end in text
    generated = text.split(begin, 1)[1].split(end, 1)[0]
    assert generated.strip() == settings.reference().strip(), (
        "docs/configuration.md is stale: run python -m kittenfs.settings docs/configuration.md"
    )
