"""``--testserver-list``: the declared servers in words, from the configuration alone.

Values are shown as written: a ``${NAME}`` variable stays ``${NAME}`` (its value may be a secret,
and a secret_env value is not read before the server starts).
"""

from __future__ import annotations

from . import mounts
from .config import (
    BuildSource,
    GeneratedSource,
    ImageSource,
    ServerConfig,
    ServerSpec,
    declared_secrets,
    display_path,
)
from .portspec import describe_ports
from .redact import MASK, Redactor, looks_secret


def describe_image(spec: ServerSpec) -> str:
    source = spec.image
    if isinstance(source, ImageSource):
        return f"image {source.ref}"
    if isinstance(source, BuildSource):
        target = f", target {source.target}" if source.target else ""
        return f"build {source.context} (dockerfile {source.dockerfile}{target})"
    assert isinstance(source, GeneratedSource)
    parts = [f"from {source.base}"]
    if source.before_install:
        parts.append(f"{len(source.before_install)} before_install step(s)")
    if source.install:
        parts.append(f"install {' '.join(source.install)}")
    if source.copy:
        parts.append(f"copy {', '.join(f'{c.src.name} -> {c.dst}' for c in source.copy)}")
    if source.run:
        parts.append(f"{len(source.run)} run step(s)")
    return "; ".join(parts)


def describe_readiness(spec: ServerSpec) -> str:
    if spec.oneshot:
        return "exited with code 0 (one-shot: its dependents start after it)"
    checks = spec.checks
    parts = []
    if spec.post_startup is not None:
        parts.append(f"post_startup {list(spec.post_startup.command)}")
    parts += [f"tcp {port}" for port in checks.tcp]
    parts += [f"tcp {c.port} expect {c.expect!r}" for c in checks.banners]
    parts += [f"http {c.port}{c.path} -> {' or '.join(map(str, c.status))}" for c in checks.http]
    if checks.log:
        parts.append(f"log {checks.log!r}")
    if checks.healthcheck:
        parts.append("healthcheck")
    return ", ".join(parts) or "running"


def describe_env_file(spec: ServerSpec) -> str:
    """The file and what it sets (env may override a value): secret-looking values masked."""
    assert spec.env_file is not None
    env = dict(spec.env)
    shown = [
        f"{key}={MASK if looks_secret(key) else env.get(key, '')}" for key in spec.env_file.keys
    ]
    return f"{display_path(spec.env_file.path)} ({', '.join(shown) or 'no variables'})"


def optional_lines(spec: ServerSpec) -> list[str]:
    """Lines for keys shown only when set."""
    lines = []
    if spec.declared_at:
        lines.append(f"    from:    {spec.declared_at}")
    if spec.volumes:
        lines.append(f"    volumes: {', '.join(mounts.describe(m) for m in spec.volumes)}")
    if spec.env_file is not None:
        lines.append(f"    env_file: {describe_env_file(spec)}")
    if spec.pull != "missing" or spec.platform:
        platform = f", platform {spec.platform}" if spec.platform else ""
        lines.append(f"    pull:    {spec.pull}{platform}")
    if spec.restart != "fresh":
        lines.append(f"    restart: {spec.restart} (a death fails every later test)")
    return lines


def describe(config: ServerConfig) -> str:
    if not config.servers:
        return f"testserver: no servers declared ({config.source})\n"
    lines = [f"testserver: {len(config.servers)} server(s) from {config.source}"]
    for spec in config.servers.values():
        lines += [
            f"{spec.name}",
            f"    image:   {describe_image(spec)}",
            f"    command: {list(spec.command) if spec.command else '(the image default)'}",
            f"    ports:   {', '.join(describe_ports(spec.ports)) or '-'}",
            f"    links:   {', '.join(spec.links) or '-'}",
            f"    ready:   {describe_readiness(spec)} (timeout {spec.timeout:g}s; "
            f"image {spec.image_timeout:g}s)",
            f"    share:   {spec.share}" if spec.scope == "session" else "    share:   worker",
            f"    scope:   {spec.scope}",
            f"    init:    {'yes' if spec.init else 'no'}",
            f"    reset:   {list(spec.reset) if spec.reset else '-'}",
            *optional_lines(spec),
        ]
        if options := spec.options.describe():
            lines.append(f"    options: {'; '.join(options)}")
    lines += [f"note: {note}" for note in config.notes]  # compose keys ignored, and such
    # A secret value may show up elsewhere too (in a command, under another key).
    return Redactor(declared_secrets(config))("\n".join(lines) + "\n")
