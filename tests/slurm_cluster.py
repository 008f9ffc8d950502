"""A throwaway single-node SLURM cluster for the tests: munge, MariaDB + slurmdbd (accounting, which sacct and
so submitit need), slurmctld and slurmd, all bound to 127.0.0.1, with their state in one temporary folder.

Missing packages are installed with apt-get (Debian/Ubuntu, as root). Every daemon runs in the foreground as a
child of this process and is stopped by its process id at the end (with the job steps it started). Timings
tuned for tests: a requeued job starts again after ~15-20 s (credentials expire after 10 s, KillWait 2 s,
the scheduler runs every 2 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
BINARIES = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
NODE = "node1"


class Unavailable(RuntimeError):
    """SLURM is not installed and cannot be installed here (the tests that need it are skipped)."""


def _missing() -> list[str]:
    return [b for b in BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]


def install(log=print) -> float:
    """apt-get install what is missing (services are not started); returns the seconds it took (0 if nothing)."""
    if os.geteuid() != 0:
        raise Unavailable("a throwaway SLURM cluster needs root (its daemons run as root)")
    if not _missing():
        return 0.0
    if not shutil.which("apt-get"):
        raise Unavailable(f"SLURM is not installed ({', '.join(_missing())} missing) and cannot be installed "
                          f"here (needs root and apt-get): apt-get install {' '.join(PACKAGES)}")
    start = time.monotonic()
    policy = Path("/usr/sbin/policy-rc.d")  # keep apt from starting the packages' own daemons
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    if _missing():
        raise RuntimeError(f"installed {PACKAGES} but {_missing()} are still missing")
    log(f"installed SLURM in {time.monotonic() - start:.1f} s")
    return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, name: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return f"(no {path})"


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]  # SLURM_CONF: what the client commands (and the jobs) need
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *cmd: str, check: bool = True) -> str:
        """A SLURM command (squeue, scontrol, sacct, ...) against this cluster; its stdout."""
        done = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout

    def queue(self) -> list[str]:
        """Job ids still in the queue (pending, running, completing)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.queue():
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still queued after {timeout} s: {self.queue()}")
            time.sleep(0.5)

    def log(self, name: str) -> str:
        return _tail(self.root / f"{name}.log")


def _write_configs(root: Path, ports: dict[str, int], cpus: int, mem_mb: int) -> Path:
    host = socket.gethostname().split(".")[0]
    auth = f"AuthType=auth/munge\nAuthInfo=socket={root}/munge.sock,cred_expire=10\n"
    (root / "slurm.conf").write_text(f"""\
ClusterName=lsnctest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports['ctld']}
SlurmdPort={ports['slurmd']}
SlurmUser=root
SlurmdUser=root
{auth}CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['dbd']}
AccountingStoragePass={root}/munge.sock
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
KillWait=2
MinJobAge=300
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmdParameters=config_overrides
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    dbd = root / "slurmdbd.conf"
    dbd.write_text(f"""\
{auth}DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={ports['dbd']}
SlurmUser=root
PidFile={root}/slurmdbd.pid
LogFile={root}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports['mysql']}
StorageUser=root
StorageLoc=slurm_acct_db
""")
    dbd.chmod(0o600)
    return root / "slurm.conf"


def _start(cluster: Cluster, name: str, cmd: list[str]) -> subprocess.Popen:
    log = open(cluster.root / f"{name}.out", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **cluster.env},
                            start_new_session=True)
    cluster.procs[name] = proc
    return proc


def start(log=print) -> Cluster:
    """Start munged, mariadbd, slurmdbd, slurmctld, slurmd; wait until the node is idle. Call stop() after."""
    start_t = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="lsnc-slurm-"))
    for d in ("state", "spool", "munge", "db"):
        (root / d).mkdir()
    ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}
    cpus = max(4, os.cpu_count() or 1)  # oversubscribed (config_overrides): tiny CPU jobs
    mem_mb = 512 * cpus
    conf = _write_configs(root, ports, cpus, mem_mb)
    cluster = Cluster(root, {"SLURM_CONF": str(conf)})
    try:
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        _start(cluster, "munged", ["munged", "-F", "--force", f"--socket={root}/munge.sock", f"--key-file={key}",
                                   f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munged.log",
                                   f"--seed-file={root}/munge/seed"])
        _wait_file(root / "munge.sock", cluster.procs["munged"], "munged", root / "munged.out")
        subprocess.run(["mariadb-install-db", f"--datadir={root}/db", "--user=root", "--auth-root-authentication-"
                        "method=normal", "--skip-test-db"], check=True, capture_output=True)
        db = _start(cluster, "mariadbd", ["mariadbd", "--no-defaults", f"--datadir={root}/db", "--user=root",
                                          "--bind-address=127.0.0.1", f"--port={ports['mysql']}",
                                          f"--socket={root}/mysql.sock", f"--pid-file={root}/mariadbd.pid",
                                          f"--log-error={root}/mariadbd.log", "--skip-grant-tables",
                                          "--innodb-buffer-pool-size=64M"])
        _wait_port(ports["mysql"], db, "mariadbd", root / "mariadbd.log")
        dbd = _start(cluster, "slurmdbd", ["slurmdbd", "-D"])
        _wait_port(ports["dbd"], dbd, "slurmdbd", root / "slurmdbd.log")
        ctld = _start(cluster, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
        _wait_port(ports["ctld"], ctld, "slurmctld", root / "slurmctld.log")
        _start(cluster, "slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(conf)])
        _wait_node_idle(cluster)
    except BaseException:
        stop(cluster)
        raise
    log(f"SLURM cluster up in {time.monotonic() - start_t:.1f} s ({root})")
    return cluster


def _wait_file(path: Path, proc: subprocess.Popen, name: str, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{_tail(log)}")
        time.sleep(0.05)


def _wait_node_idle(cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        if cluster.procs["slurmd"].poll() is not None:
            break
        state = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
        if state == "idle":
            return
        time.sleep(0.3)
    raise RuntimeError(f"node not idle (state {state!r}):\n{cluster.log('slurmd')}\n{cluster.log('slurmctld')}")


def _descendants(pids: set[int]) -> set[int]:
    """Processes whose parent chain leads to one of pids (job steps started by our slurmd)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), set(pids)
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def stop(cluster: Cluster) -> None:
    """Cancel every job, then stop the daemons (and anything they started) by process id; delete the state."""
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        cluster.run("scancel", "--full", "-u", "root", check=False)
    ours = {p.pid for p in cluster.procs.values() if p.poll() is None}
    children = _descendants(ours)
    for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
        proc = cluster.procs.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(cluster.root, ignore_errors=True)
