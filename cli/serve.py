"""Serving commands: `serve`, `bento`, `api-key` (new, list, revoke), `ui`,
`console`."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import click

from cli.common import PORT, Options, executable, pass_options
from core.config import ConfigError
from core.exitcodes import ExitCode

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=PORT, default=3000)
@pass_options
def serve(options: Options, host: str, port: int) -> int:
    """Serve the champions over HTTP with BentoML (exit code: the server's)."""
    from model.registry import configure
    from serving.api.auth import keyring_from_config
    from serving.api.servers import with_workers
    from serving.scoring import Champions

    path, config, uri = options.context()
    keyring_from_config(config.api)  # no key configured: fail here, saying how
    configure(uri)
    # fail here, clearly, before starting a server
    champions = Champions.load(config, uri)
    log.info("champions: %s", champions.versions)
    env = {**os.environ, "PROPENSITY_CONFIG": str(path), "MLFLOW_TRACKING_URI": uri}
    env = with_workers(env, "propensity", config.api.workers)
    cmd = [
        executable("bentoml"),
        "serve",
        "serving.api.service:Propensity",
        "--host",
        host,
        "--port",
        str(port),
    ]
    click.echo(
        f"serving on http://{host}:{port} with {config.api.workers} "
        "worker(s) (docs at /docs)"
    )
    return subprocess.call(cmd, env=env)


@click.command("bento")
@click.option("--version", default=None, help="the Bento's version tag")
@click.option("--import-only", is_flag=True, help="import the models, build nothing")
@pass_options
def bento(options: Options, version: str | None, import_only: bool) -> ExitCode:
    """Import the champions into the BentoML model store and `bentoml build` a
    Bento pinning them (bentofile.yaml)."""
    from model.registry import configure
    from serving.api import bento as bentos

    _, config, uri = options.context()
    configure(uri)
    for tag in bentos.import_champions(config, uri):
        click.echo(f"champion in the BentoML model store: {tag}")
    if import_only:
        return ExitCode.OK
    tag = bentos.build(version)
    click.echo(f"built Bento {tag}; serve it with `bentoml serve {tag}`")
    return ExitCode.OK


def _keys_file(options: Options) -> Path:
    path, config, _ = options.context()
    if config.api.keys_file is None:
        raise ConfigError(
            f"{path}: api.keys_file is not set; add e.g. "
            "`api: {keys_file: api-keys.txt}` (relative to the config)"
        )
    return config.api.keys_file


@click.group("api-key")
def api_key() -> None:
    """Create, list or revoke API keys in the config's api.keys_file."""


@api_key.command("new")
@click.option("--name", required=True, help="who holds it, e.g. crm-2026-11")
@click.option(
    "--scopes",
    default="score",
    help="what it may call, comma-separated: score (predict, predict_by_id, "
    "explain), outreach, admin (metadata, forget)",
)
@pass_options
def api_key_new(options: Options, name: str, scopes: str) -> ExitCode:
    """Generate a key, print it once, store only its salted hash."""
    from serving.api.auth import SCOPES, add_key, parse_scopes

    path = _keys_file(options)
    allowed = parse_scopes(scopes, "--scopes")
    key = add_key(path, name, allowed)
    click.echo(key)
    click.echo(
        f"added key {name!r} ({', '.join(s for s in SCOPES if s in allowed)}) "
        f"to {path}; the key is shown only now: give it to the client (header "
        "`Authorization: Bearer <key>`)",
        err=True,
    )
    return ExitCode.OK


@api_key.command("list")
@pass_options
def api_key_list(options: Options) -> ExitCode:
    """The names of the keys in the file (and their scopes)."""
    from serving.api.auth import SCOPES, read_key_file

    path = _keys_file(options)
    for key in read_key_file(path) if path.exists() else []:
        click.echo(f"{key.name}\t{','.join(s for s in SCOPES if s in key.scopes)}")
    return ExitCode.OK


@api_key.command("revoke")
@click.argument("name")
@pass_options
def api_key_revoke(options: Options, name: str) -> ExitCode:
    """Remove a key's line from the file."""
    from serving.api.auth import remove_key

    path = _keys_file(options)
    remove_key(path, name)
    click.echo(f"revoked key {name!r} in {path}", err=True)
    return ExitCode.OK


@click.command("ui")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=PORT, default=5000)
@pass_options
def ui(options: Options, host: str, port: int) -> int:
    """The MLflow UI on the tracking store (exit code: the UI server's); prints
    the link that opens the experiment on its training runs."""
    _, config, uri = options.context()
    if uri.startswith(("http://", "https://")):
        # team mode: the tracking server is the UI; `mlflow ui` cannot open it
        click.echo(f"MLflow UI: {uri} (the tracking server serves it)")
        return ExitCode.OK
    cmd = [
        executable("mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    click.echo(f"MLflow UI on http://{host}:{port} for {uri}")
    # as subprocess.call does, but the link is looked up while the UI starts
    with subprocess.Popen(cmd) as process:
        try:
            _echo_runs_link(uri, f"http://{host}:{port}", config.mlflow.experiment)
            return process.wait()
        except BaseException:
            process.kill()
            raise


def _echo_runs_link(uri: str, ui: str, experiment: str) -> None:
    """The experiment's runs in the UI: MLflow 3.17 opens every experiment in its
    GenAI view unless the link asks for the machine-learning one."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from model.registry import experiment_url

    try:
        found = MlflowClient(uri, uri).get_experiment_by_name(experiment)
    except MlflowException as exc:  # the UI still starts; it will say why
        log.warning("cannot look up experiment %r in %s: %s", experiment, uri, exc)
        return
    if found is not None:
        url = experiment_url(ui, found.experiment_id)
        click.echo(f"training runs of {experiment!r}: {url}")


@click.command("console")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=PORT, default=8080)
@pass_options
def console(options: Options, host: str, port: int) -> ExitCode:
    """The web console alone (it is also served by `propensity serve` at
    /console): sign in with an API key at http://HOST:PORT/console/."""
    import uvicorn

    from serving.api.auth import keyring_from_config
    from serving.console.app import standalone

    path, config, _ = options.context()
    keyring_from_config(config.api)  # no key configured: fail here, saying how
    click.echo(
        f"the console on http://{host}:{port}/console/ (sign in with an API key)"
    )
    uvicorn.run(
        standalone(config, path.parent), host=host, port=port, log_level="warning"
    )
    return ExitCode.OK


COMMANDS = (serve, bento, api_key, ui, console)
