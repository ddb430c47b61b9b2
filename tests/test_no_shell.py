"""No shell, no string-built command line, no unsafe YAML, no loosened container, in the source.

Every module of ``pytest_testserver`` is parsed with ``ast`` and searched for:

- ``shell=`` anything but ``False``; ``os.system``, ``os.popen``, ``subprocess.getoutput`` and
  other calls that always use a shell; ``eval`` and ``exec``;
- ``subprocess`` calls whose command is not a literal list or tuple (a string would be split or
  given to a shell; a list is passed as is);
- ``"docker"`` as the first element of an argument list: the engine is reached through the SDK,
  never the CLI — and the SDK is imported by ``engine.py`` alone;
- ``yaml.load`` without a SafeLoader (or a subclass of one), ``yaml.unsafe_load``,
  ``yaml.full_load`` and the unsafe loader classes;
- container options that would loosen isolation (privileged, host mounts, host namespaces,
  capabilities, devices, sysctls, tmpfs, mounts), and ``network_mode="host"``, as keywords, as
  keys of a dict or an item assigned, or hidden behind a ``**`` splat into the engine's create
  calls; nor may a server key ask for one. Two exceptions are deliberate: ``cap_add``,
  ``sysctls`` and ``tmpfs`` are built in ``containeroptions.py`` alone, from values checked
  there against fixed lists (capabilities confined to the container, namespaced sysctls, a
  tmpfs's size and mode), and reach the engine only through the options' own ``create_kwargs`` /
  ``host_config_kwargs``; and the one way to mount anything is ``mounts=docker_mounts(...)`` in
  ``engine.py``, from ``EngineMount`` values that only ``mounts.py`` makes (a bind's is
  read-only by construction, and ``docker_mounts`` makes it so again); the SDK's ``Mount`` is
  built nowhere else.

The checker itself is tested on snippets that must be caught and snippets that must pass.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pytest_testserver
from pytest_testserver.config import SERVER_KEYS, parse_config
from pytest_testserver.containeroptions import (
    CAP_ADD_ALLOWED,
    CAP_ADD_REFUSED,
    DOCKER_DEFAULT_CAPS,
)
from pytest_testserver.errors import ConfigError

PACKAGE = Path(pytest_testserver.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))

ALWAYS_A_SHELL = {
    "os.system",
    "os.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
    "pty.spawn",
}
TAKES_A_COMMAND = {
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.Popen",
}
# Called with a program name first: naming a container CLI there means running it (or finding it).
STARTS_A_PROGRAM = {*TAKES_A_COMMAND, "asyncio.create_subprocess_exec", "shutil.which"}
STARTS_A_PROGRAM_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
BUILTINS_THAT_RUN_CODE = {"eval", "exec"}
UNSAFE_YAML_CALLS = {
    "yaml.unsafe_load",
    "yaml.unsafe_load_all",
    "yaml.full_load",
    "yaml.full_load_all",
}
YAML_LOAD_CALLS = {"yaml.load", "yaml.load_all"}
UNSAFE_LOADERS = {
    "yaml.Loader",
    "yaml.FullLoader",
    "yaml.UnsafeLoader",
    "yaml.CLoader",
    "yaml.CFullLoader",
    "yaml.CUnsafeLoader",
    "yaml.loader.Loader",
    "yaml.loader.FullLoader",
    "yaml.loader.UnsafeLoader",
}
SAFE_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.loader.SafeLoader"}
CLI_NAMES = {"docker", "docker-compose", "podman", "nerdctl"}
# Options of docker-py's create_host_config / create_container that loosen isolation.
LOOSENING_OPTIONS = {
    "privileged",
    "binds",
    "volumes",
    "volumes_from",
    "mounts",
    "devices",
    "device_requests",
    "device_cgroup_rules",
    "cap_add",
    "security_opt",
    "pid_mode",
    "ipc_mode",
    "uts_mode",
    "userns_mode",
    "cgroupns",
    "sysctls",
    "tmpfs",
}
# Allowed in containeroptions.py only, whose values are checked against fixed lists (see its
# docstring).
CONFINED_OPTIONS = {"cap_add", "sysctls", "tmpfs"}
CONFINED_MODULE = "containeroptions.py"
# The compose translator writes a service's keys into the plugin's own configuration mapping
# (then validated by config.py, mounts.py and containeroptions.py like testservers.yaml) and
# names the refused ones in its tables: its dict keys and item stores are configuration data,
# never engine arguments. Its calls are checked like any module's.
TRANSLATOR_MODULE = "composeservice.py"
ENGINE_CREATE_CALLS = ("create_host_config", "create_container", "create_container_config")
# The only splats the engine's create calls may take: the options' own arguments.
OPTION_ARGUMENTS = ("host_config_kwargs", "create_kwargs")


# The single sanctioned path for mounts (volumes, read-only binds): module, function, keyword.
MOUNTS_MODULE = "mounts.py"  # the only module that makes EngineMount values
ENGINE_MODULE = "engine.py"  # the only one that passes mounts= to the SDK ...
MOUNTS_BUILDER = "docker_mounts"  # ... built by this function of it, the only SDK Mount maker
SDK_MOUNTS = {"docker.types.Mount", "docker.types.services.Mount", "Mount"}
# Constructors of configuration data, whose fields may share an option's name (ServerSpec's
# volumes: parsed and confined by mounts.py); never a container option.
CONFIGURATION_DATA = {"ServerSpec"}


@dataclass
class Checker(ast.NodeVisitor):
    """Collects findings as ``"line N: what"`` for one module (``name``: its file name)."""

    module: ast.Module
    # the module's path in the package: containeroptions.py, engine.py and mounts.py may more
    name: str = ""
    findings: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)  # the enclosing function definitions
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> dotted origin
    safe_classes: set[str] = field(default_factory=set)  # loaders defined here on SafeLoader

    def run(self) -> list[str]:
        for node in ast.walk(self.module):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(self.module):
            if isinstance(node, ast.ClassDef) and any(
                self.is_safe_loader(base) for base in node.bases
            ):
                self.safe_classes.add(node.name)
        self.visit(self.module)
        return self.findings

    def dotted(self, node: ast.AST) -> str:
        """``sp.Popen`` -> ``subprocess.Popen``, through the module's imports; "" if unknown."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else ""
        return ""

    def is_safe_loader(self, node: ast.AST) -> bool:
        name = self.dotted(node)
        return name in SAFE_LOADERS or (isinstance(node, ast.Name) and node.id in self.safe_classes)

    def report(self, node: ast.AST, what: str) -> None:
        self.findings.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def is_sanctioned_mounts(self, value: ast.AST) -> bool:
        """``mounts=docker_mounts(...)`` (or ``... or None``) in engine.py."""
        if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
            rest = value.values[1:]
            if all(isinstance(v, ast.Constant) and v.value is None for v in rest):
                value = value.values[0]
        return (
            self.name == ENGINE_MODULE
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == MOUNTS_BUILDER
        )

    def check_mount_makers(self, node: ast.Call, name: str) -> None:
        if name in SDK_MOUNTS and not (
            self.name == ENGINE_MODULE and self.functions[-1:] == [MOUNTS_BUILDER]
        ):
            self.report(node, f"{name}(): mounts are made by {ENGINE_MODULE} {MOUNTS_BUILDER}()")
        if name.split(".")[-1] == "EngineMount" and self.name != MOUNTS_MODULE:
            self.report(node, f"EngineMount(): mounts come from {MOUNTS_MODULE} only")

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        self.check_mount_makers(node, name)
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                self.report(node, f"{name or 'a call'}(shell=...): a shell is never involved")
            if keyword.arg is not None:
                sanctioned = keyword.arg == "mounts" and self.is_sanctioned_mounts(keyword.value)
                if name not in CONFIGURATION_DATA and not sanctioned:
                    self.check_option(node, keyword.arg, f"{keyword.arg}=")
            elif self.attr_name(node.func) in ENGINE_CREATE_CALLS and not self.options_splat(
                keyword.value
            ):
                self.report(node, "** into an engine create call hides its options")
            if (
                keyword.arg == "network_mode"
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value == "host"
            ):
                self.report(node, 'network_mode="host" puts the container on the host network')
        if name in ALWAYS_A_SHELL:
            self.report(node, f"{name}() runs its command through a shell")
        if isinstance(node.func, ast.Name) and node.func.id in BUILTINS_THAT_RUN_CODE:
            self.report(node, f"{node.func.id}() runs a string as code")
        if name in TAKES_A_COMMAND:
            command = node.args[0] if node.args else None
            command = next((k.value for k in node.keywords if k.arg == "args"), command)
            if not isinstance(command, (ast.List, ast.Tuple)):
                self.report(node, f"{name}() must be given a literal argument list")
        if name in ("os.posix_spawn", "os.posix_spawnp"):
            argv = node.args[1] if len(node.args) > 1 else None
            if not isinstance(argv, (ast.List, ast.Tuple)):
                self.report(node, f"{name}() must be given a literal argument list")
        if name in UNSAFE_YAML_CALLS:
            self.report(node, f"{name}() constructs arbitrary Python objects")
        if name in YAML_LOAD_CALLS:
            loader = node.args[1] if len(node.args) > 1 else None
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), loader)
            if loader is None or not self.is_safe_loader(loader):
                self.report(node, f"{name}() without a SafeLoader (or a subclass of one)")
        program = self.cli_name(node.args[0]) if node.args else ""
        if program and (name in STARTS_A_PROGRAM or name.startswith(STARTS_A_PROGRAM_PREFIXES)):
            self.report(node, f"{name}() runs the {program} CLI: the engine is reached via the SDK")
        self.generic_visit(node)

    @staticmethod
    def attr_name(node: ast.AST | None) -> str:
        """``api.create_host_config`` -> ``create_host_config``; a plain name as is."""
        if isinstance(node, ast.Attribute):
            return node.attr
        if isinstance(node, ast.Name):
            return node.id
        return ""

    def options_splat(self, node: ast.AST) -> bool:
        """``**options.host_config_kwargs()``: the one splat an engine create call may take."""
        return isinstance(node, ast.Call) and self.attr_name(node.func) in OPTION_ARGUMENTS

    def check_option(self, node: ast.AST, name: str, shown: str) -> None:
        if name not in LOOSENING_OPTIONS:
            return
        if self.name == CONFINED_MODULE and name in CONFINED_OPTIONS:
            return
        self.report(node, f"{shown} loosens the container's isolation")

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if self.name == TRANSLATOR_MODULE:
                break
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.check_option(node, key.value, f"{key.value!r} as a key")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        translator = self.name == TRANSLATOR_MODULE
        if isinstance(node.ctx, ast.Store) and isinstance(key, str) and not translator:
            self.check_option(node, key, f"[{key!r}] =")
        self.generic_visit(node)

    def cli_name(self, node: ast.AST) -> str:
        """The CLI a literal names ("docker"...), or ""."""
        if isinstance(node, ast.Constant) and node.value in CLI_NAMES:
            return str(node.value)
        return ""

    def visit_List(self, node: ast.List) -> None:
        self.check_argv(node)
        self.generic_visit(node)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self.check_argv(node)
        self.generic_visit(node)

    def check_argv(self, node: ast.List | ast.Tuple) -> None:
        program = self.cli_name(node.elts[0]) if node.elts else ""
        if program:
            self.report(node, f"{program!r} as argv[0]: the engine is reached via the SDK")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.dotted(node) in UNSAFE_LOADERS:
            self.report(node, f"{self.dotted(node)} constructs arbitrary Python objects")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and self.aliases.get(node.id) in UNSAFE_LOADERS:
            self.report(node, f"{self.aliases[node.id]} constructs arbitrary Python objects")


def findings_in(source: str, name: str = "") -> list[str]:
    return Checker(ast.parse(textwrap.dedent(source)), name).run()


def module_id(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_the_package_has_modules_to_check() -> None:
    names = {module_id(path) for path in MODULES}
    assert {"engine.py", "reaper.py", "yamlfile.py", "image.py", "launcher.py", "pool.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_no_shell_no_cli_no_unsafe_yaml_no_loosened_container(path: Path) -> None:
    findings = Checker(
        ast.parse(path.read_text(encoding="utf-8"), str(path)), module_id(path)
    ).run()
    assert not findings, f"{module_id(path)}:\n" + "\n".join(findings)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_module_imports_the_docker_sdk() -> None:
    importers = sorted(module_id(p) for p in MODULES if "docker" in imports_of(p))
    assert importers == ["engine.py"]


def starts_processes(path: Path) -> bool:
    """Imports subprocess, or calls os.spawn*, os.posix_spawn*, os.exec* or os.fork."""
    if "subprocess" in imports_of(path):
        return True
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr.startswith(("spawn", "posix_spawn", "exec", "fork"))
        ):
            return True
    return False


def test_only_the_watchdogs_start_processes() -> None:
    """The run's watchdog (reaper.py) and a kept container's idle watch (reuse.py)."""
    starters = sorted(module_id(p) for p in MODULES if starts_processes(p))
    assert starters == ["reaper.py", "reuse.py"]


def test_no_server_key_can_loosen_the_container() -> None:
    """No key for what would open the container up. (``cap_add``, ``sysctls`` and ``tmpfs``
    are keys, confined by the tests below; ``user`` picks a user inside the container, as the
    image's USER does, and loosens nothing. ``volumes`` is allowed on purpose (SECURITY.md):
    run-owned volumes and read-only binds inside the project, through mounts.py only
    (test_mounts.py tests its refusals).)"""
    assert "volumes" in SERVER_KEYS
    assert not {
        "privileged",
        "mounts",
        "binds",
        "devices",
        "device_requests",
        "network_mode",
        "network",
        "pid",
        "pid_mode",
        "ipc",
        "ipc_mode",
        "userns",
        "userns_mode",
        "uts_mode",
        "cgroupns",
        "security_opt",
    } & set(SERVER_KEYS)


# The capabilities that open a container to its host: each must stay refused by cap_add.
ESCAPES = (
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "SYS_BOOT",
    "DAC_READ_SEARCH",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "BPF",
    "PERFMON",
    "SYSLOG",
    "SYS_TIME",
    "AUDIT_CONTROL",
)


def options_error(**fields: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(
            {"servers": {"web": {"image": "busybox:stable", **fields}}},
            base=Path(),
            source="testservers.yaml",
        )
    return str(excinfo.value)


@pytest.mark.parametrize("cap", ESCAPES)
@pytest.mark.parametrize("spelling", [str, str.lower, lambda c: f"CAP_{c}", lambda c: f"cap_{c}"])
def test_cap_add_refuses_every_capability_that_reaches_the_host(cap: str, spelling: Any) -> None:
    message = options_error(cap_add=["CHOWN", spelling(cap)])
    assert message == (
        f"testservers.yaml: servers.web.cap_add[1]: {cap} is refused: {CAP_ADD_REFUSED[cap]}"
    )


def test_cap_add_cannot_ask_for_all() -> None:
    assert "ALL would add every capability" in options_error(cap_add=["ALL"])


def test_the_capabilities_cap_add_grants_are_a_fixed_list_apart_from_the_refused() -> None:
    assert set(ESCAPES) <= set(CAP_ADD_REFUSED)
    assert not set(CAP_ADD_ALLOWED) & set(CAP_ADD_REFUSED)
    assert set(CAP_ADD_ALLOWED) == {
        *DOCKER_DEFAULT_CAPS,
        "IPC_LOCK",
        "IPC_OWNER",
        "LEASE",
        "NET_ADMIN",
        "NET_BROADCAST",
        "SYS_NICE",
        "SYS_RESOURCE",
    }


@pytest.mark.parametrize(
    "name",
    [
        "kernel.core_pattern",  # a host program run as root on every crash
        "kernel.modprobe",
        "kernel.hostname",
        "vm.overcommit_memory",
        "fs.file-max",
        "net.core.rmem_max",
        "kernel.shm",
    ],
)
def test_sysctls_are_only_those_of_the_containers_own_namespaces(name: str) -> None:
    message = options_error(sysctls={name: 1})
    assert f"servers.web.sysctls.{name}: '{name}' is not a sysctl of the container's" in message


def test_a_tmpfs_carries_only_a_size_and_a_mode() -> None:
    spec = parse_config(
        {
            "servers": {
                "web": {
                    "image": "busybox:stable",
                    "tmpfs": ["/a", {"path": "/b", "size": "1m", "mode": "1777"}],
                }
            }
        },
        base=Path(),
        source="testservers.yaml",
    ).servers["web"]
    assert spec.options.host_config_kwargs() == {
        "tmpfs": {"/a": "", "/b": "size=1048576,mode=1777"}
    }
    for bad in ("exec", "size=1m,exec", "64 m", "64m,exec"):
        assert "is not a size" in options_error(tmpfs=[{"path": "/a", "size": bad}])


@pytest.mark.parametrize(
    "source",
    [
        pytest.param('import subprocess\nsubprocess.run(["ls"], shell=True)', id="shell-true"),
        pytest.param("import subprocess\nsubprocess.run(['ls'], shell=flag)", id="shell-variable"),
        pytest.param('import subprocess as sp\nsp.Popen("ls -l")', id="popen-string"),
        pytest.param("import subprocess\nsubprocess.check_call(argv)", id="call-variable"),
        pytest.param("import os\nos.posix_spawn(exe, argv, env)", id="posix-spawn-variable"),
        pytest.param("import subprocess\nsubprocess.run(args=cmd)", id="args-keyword"),
        pytest.param(
            'from subprocess import check_output\ncheck_output(f"docker ps {x}")',
            id="from-import-f-string",
        ),
        pytest.param('import os\nos.system("ls")', id="os-system"),
        pytest.param('from os import popen\npopen("ls")', id="os-popen-imported"),
        pytest.param('import subprocess\nsubprocess.getoutput("ls")', id="getoutput"),
        pytest.param('import asyncio\nasyncio.create_subprocess_shell("ls")', id="asyncio-shell"),
        pytest.param('argv = ["docker", "run", image]', id="docker-argv-list"),
        pytest.param('argv = ("docker", "ps")', id="docker-argv-tuple"),
        pytest.param('import shutil\nshutil.which("docker")', id="which-docker"),
        pytest.param('import os\nos.execvp("docker", args)', id="execvp-docker"),
        pytest.param('import subprocess\nsubprocess.run(["podman", "ps"])', id="podman-argv"),
        pytest.param("eval(text)", id="eval"),
        pytest.param("exec(code)", id="exec"),
        pytest.param("import yaml\nyaml.load(text)", id="yaml-load-default"),
        pytest.param("import yaml\nyaml.load(text, Loader=yaml.Loader)", id="yaml-loader"),
        pytest.param("import yaml\nyaml.load(text, yaml.FullLoader)", id="yaml-full-positional"),
        pytest.param("import yaml\nyaml.load_all(text, Loader=Mine)", id="yaml-unknown-loader"),
        pytest.param("import yaml\nyaml.unsafe_load(text)", id="yaml-unsafe-load"),
        pytest.param("import yaml\nyaml.full_load(text)", id="yaml-full-load"),
        pytest.param(
            "import yaml\nclass L(yaml.UnsafeLoader):\n    pass\nyaml.load(t, Loader=L)",
            id="yaml-unsafe-subclass",
        ),
        pytest.param("from yaml import UnsafeLoader\nx = UnsafeLoader", id="yaml-unsafe-import"),
        pytest.param("api.create_host_config(privileged=True)", id="privileged"),
        pytest.param('api.create_host_config(binds={"/": {"bind": "/host"}})', id="host-mount"),
        pytest.param('api.create_host_config(network_mode="host")', id="host-network"),
        pytest.param('api.create_host_config(pid_mode="host")', id="host-pid"),
        pytest.param('api.create_host_config(cap_add=["SYS_ADMIN"])', id="cap-add"),
        pytest.param("api.create_container(image, volumes=['/data'])", id="volumes"),
        pytest.param('api.create_host_config(tmpfs={"/run": "exec"})', id="tmpfs-elsewhere"),
        pytest.param('extra = {"cap_add": ["SYS_ADMIN"]}', id="cap-add-as-a-dict-key"),
        pytest.param('kwargs["privileged"] = True', id="privileged-assigned"),
        pytest.param(
            "api.create_host_config(port_bindings=b, **extra)", id="splat-into-host-config"
        ),
        pytest.param("api.create_container(image, **options)", id="splat-into-create"),
        pytest.param("api.create_host_config(mounts=[m])", id="mounts-list"),
        pytest.param("api.create_host_config(mounts=docker_mounts(m))", id="mounts-elsewhere"),
        pytest.param(
            "import docker.types\ndocker.types.Mount('/x', '/', type='bind')", id="sdk-mount"
        ),
        pytest.param("from docker.types import Mount\nMount('/x', '/')", id="sdk-mount-imported"),
        pytest.param("EngineMount('bind', '/x', '/', False)", id="engine-mount-elsewhere"),
    ],
)
def test_the_checker_catches(source: str) -> None:
    assert findings_in(source)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("api.create_host_config(privileged=True)", id="privileged"),
        pytest.param('kwargs = {"binds": binds}', id="binds-as-a-dict-key"),
        pytest.param('kwargs["security_opt"] = ["seccomp=unconfined"]', id="security-opt"),
    ],
)
def test_the_checker_catches_in_the_options_module_all_but_the_confined_options(
    source: str,
) -> None:
    assert findings_in(source, CONFINED_MODULE)


def test_the_options_module_may_build_the_confined_options() -> None:
    source = 'kwargs["cap_add"] = caps\nContainerOptions(tmpfs=t, sysctls={"a": "b"})'
    assert findings_in(source, CONFINED_MODULE) == []
    assert len(findings_in(source)) == 3


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("api.create_host_config(mounts=[m])", id="mounts-list"),
        pytest.param("api.create_host_config(mounts=mine(m) or None)", id="mounts-other-function"),
        pytest.param("api.create_host_config(binds=docker_mounts(m))", id="binds"),
        pytest.param(
            "import docker.types\ndef other(m):\n    return docker.types.Mount('/x', '/')",
            id="sdk-mount-outside-the-builder",
        ),
        pytest.param("EngineMount('bind', '/x', '/', False)", id="engine-mount"),
    ],
)
def test_the_checker_catches_in_the_engine_module(source: str) -> None:
    assert findings_in(source, "engine.py")


def test_the_checker_lets_the_one_mounts_path_pass() -> None:
    engine = """
        import docker.types
        def docker_mounts(mounts):
            return [docker.types.Mount(m.target, m.source, read_only=True) for m in mounts]
        api.create_host_config(port_bindings=b, mounts=docker_mounts(mounts) or None)
    """
    assert findings_in(engine, "engine.py") == []
    assert findings_in("EngineMount('bind', '/x', '/', True)", "mounts.py") == []
    assert findings_in("ServerSpec(name, image, volumes=parse_volumes(v))", "config.py") == []


def test_the_engine_mounts_a_bind_read_only_whatever_it_is_given() -> None:
    from pytest_testserver.engine import docker_mounts
    from pytest_testserver.mounts import EngineMount

    given = [EngineMount("bind", "/x", "/src", False), EngineMount("volume", "/v", None, False)]
    assert [m["ReadOnly"] for m in docker_mounts(given)] == [True, False]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            'import subprocess, sys\nsubprocess.Popen([sys.executable, "-m", "x"], close_fds=True)',
            id="popen-list",
        ),
        pytest.param("import subprocess\nsubprocess.run(('true',), shell=False)", id="tuple"),
        pytest.param("import subprocess\nx = subprocess.PIPE", id="constants"),
        pytest.param("import yaml\nyaml.safe_load(text)", id="safe-load"),
        pytest.param("import yaml\nyaml.load(text, Loader=yaml.SafeLoader)", id="safe-loader"),
        pytest.param(
            "import yaml\nclass L(yaml.SafeLoader):\n    pass\nyaml.load(f, Loader=L)",
            id="safe-subclass",
        ),
        pytest.param('handle.exec(["env"])', id="exec-method"),
        pytest.param("import docker\napi = docker.APIClient()", id="sdk"),
        pytest.param(
            'api.create_host_config(port_bindings=b, network_mode=network or "default")',
            id="host-config",
        ),
        pytest.param(
            "api.create_host_config(port_bindings=b, **options.host_config_kwargs())",
            id="the-options-arguments",
        ),
        pytest.param('message = "remove them with: docker rm -f ..."', id="docker-in-a-message"),
        pytest.param('import logging\nlog = logging.getLogger("docker")', id="docker-logger"),
    ],
)
def test_the_checker_lets_pass(source: str) -> None:
    assert findings_in(source) == []
