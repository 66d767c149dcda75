"""A one-node SLURM cluster on this machine, for the tests and for trying SLURM locally.

Debian's ``slurm-wlm`` and ``munge`` packages (``apt-get install -y slurm-wlm munge``), configured
in a folder of our own: a munge key and daemon on a private socket, a ``slurm.conf`` describing
this machine (its hostname, CPUs and memory as ``slurmd -C`` reports them) with one partition,
``debug``, and ``slurmctld`` + ``slurmd`` running as root in the foreground with their state, spool
and logs in that folder. Nothing under /etc is touched; client commands (sbatch, squeue, scontrol,
and submitit through them) find the cluster through ``SLURM_CONF``.

No cgroups (a container rarely lets slurmd manage them): ``proctrack/linuxproc`` tracks a job's
processes through /proc, and ``task/none`` binds nothing. No accounting database either (slurmdbd
and MariaDB): the real ``sacct`` then says "accounting storage is disabled", and submitit, which
asks ``sacct`` whether a job that left no result (a cancelled one) has ended, would wait forever.
So ``bin/sacct`` in the cluster's folder, first on the ``PATH`` of ``SlurmCluster.env``, answers
submitit's one question (``sacct -o JobID,State,NodeList --parsable2 -j ID ...``) from slurmctld's
own memory of its jobs (``squeue -t all``, which keeps finished jobs for ``MinJobAge``): the one
piece of this cluster that is not SLURM's own.

From a shell (prints the ``export SLURM_CONF=...`` line, stops everything on Ctrl-C)::

    python -m tests.slurm_cluster /tmp/slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol")
INSTALL = "apt-get update && apt-get install -y slurm-wlm munge"


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can (root and the packages)."""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): run `{INSTALL}` as root"
    if os.geteuid() != 0:
        return "starting slurmctld and slurmd for a local cluster needs root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_line(hostname: str) -> str:
    """This machine as slurmd sees it (``slurmd -C``): CPUs, sockets, cores, threads, memory (MB)."""
    probe = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True)
    node = next(line for line in probe.stdout.splitlines() if line.startswith("NodeName="))
    fields = dict(item.split("=", 1) for item in node.split())
    fields["NodeName"] = hostname
    # Leave room for the OS, or slurmd refuses the node when the container reports a little less.
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))
    return " ".join(f"{key}={value}" for key, value in fields.items()) + " NodeAddr=127.0.0.1 State=UNKNOWN"


SACCT = """\
#!/bin/sh
# submitit's job-state query, answered from slurmctld's memory: see tests/slurm_cluster.py.
ids=""
while [ $# -gt 0 ]; do
    if [ "$1" = "-j" ]; then ids="${ids:+$ids,}$2"; shift; fi
    shift
done
echo "JobID|State|NodeList"
exec squeue -h -t all -o "%i|%T|%N" ${ids:+-j "$ids"}
"""


class SlurmCluster:
    """A one-node cluster whose configuration, state and logs live in ``root``.

    Args:
        root: an empty folder of its own (a pytest ``tmp_path_factory`` folder).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.hostname = socket.gethostname()
        self.conf = self.root / "slurm.conf"
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}
        self._processes: list[subprocess.Popen] = []

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        sacct = self.root / "bin" / "sacct"
        sacct.write_text(SACCT)
        sacct.chmod(0o755)
        # munged insists on a private key and socket folder.
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}", "--force"], check=True, timeout=30)
        key.chmod(0o600)
        conf = f"""\
ClusterName=pyramidlab
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.root}/munge/munge.socket
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 minutes.
MinJobAge=300
# A cancelled or timed-out job gets SIGTERM, then SIGKILL this many seconds later.
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
{_node_line(self.hostname)}
PartitionName=debug Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text(conf)

    def start(self, timeout_s: float = 60) -> None:
        """Writes the configuration, starts munged, slurmctld and slurmd, and waits for the node
        to be idle; raises RuntimeError (with the daemons' logs) if it does not become idle."""
        self.write_config()
        logs = self.root / "log"
        self._spawn(
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.root}/munge/munge.socket",
                f"--key-file={self.root}/munge/munge.key",
                f"--pid-file={self.root}/munge/munged.pid",
                f"--log-file={logs}/munged.log",
                f"--seed-file={self.root}/munge/munged.seed",
            ]
        )
        self._wait_for(lambda: (self.root / "munge" / "munge.socket").exists(), 10, "munged's socket")
        # -c: a clean state (no jobs from an earlier cluster in the same folder).
        self._spawn(["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._spawn(["slurmd", "-D", "-f", str(self.conf), "-N", self.hostname])
        self._wait_for(lambda: self.node_state() == "idle", timeout_s, f"node {self.hostname} to be idle")

    def _spawn(self, command: list[str]) -> None:
        name = Path(command[0]).name
        out = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - open while it runs
        self._processes.append(
            subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        )

    def _wait_for(self, ready, timeout_s: float, what: str) -> None:
        deadline, dead = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self._processes if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the local SLURM cluster did not start (waited for {what}; "
            f"exited: {dead or 'none'}):\n{self.logs()}"
        )

    def run(self, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command (squeue, scontrol, ...) against this cluster."""
        return subprocess.run(
            list(command), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def node_state(self) -> str:
        result = self.run("sinfo", "-h", "-N", "-o", "%t", timeout=10, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def jobs(self) -> dict[str, str]:
        """Job id (``123`` or ``123_0`` for an array element) -> state, for every known job."""
        result = self.run("squeue", "-h", "-t", "all", "-o", "%i %T", timeout=10, check=False)
        return dict(line.split() for line in result.stdout.splitlines() if line.strip())

    def release_requeued(self, *settings: str) -> list[str]:
        """Lets requeued jobs start now; returns their ids. SLURM holds a requeued job for two
        minutes (``squeue`` reason BeginTime) before it may run again; an administrator may
        release it sooner (``scontrol update JobId=... StartTime=now``), as the tests do.

        Args:
            settings: more ``scontrol update`` settings for those jobs, e.g. ``TimeLimit=5``.
        """
        pending = self.run("squeue", "-h", "-t", "PD", "-o", "%i %r", timeout=10, check=False).stdout
        held = [line.split()[0] for line in pending.splitlines() if line.endswith(" BeginTime")]
        for job_id in held:
            self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now", *settings, timeout=10)
        return held

    def elapsed_s(self, job_id: str) -> int:
        """How long the job has been running, in seconds (``squeue``'s TIME)."""
        elapsed = self.run("squeue", "-h", "-j", job_id, "-o", "%M", timeout=10).stdout.strip()
        days, _, clock = elapsed.rpartition("-")
        seconds = 0
        for part in clock.split(":"):
            seconds = seconds * 60 + int(part)
        return seconds + int(days or 0) * 86400

    def logs(self, lines: int = 30) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancels every job, then stops slurmd, slurmctld and munged (SIGTERM, then SIGKILL)."""
        if any(p.poll() is None for p in self._processes):
            self.run("scancel", "--full", "-u", "root", timeout=10, check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(
                state in ("RUNNING", "COMPLETING", "PENDING") for state in self.jobs().values()
            ):
                time.sleep(0.5)
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._processes.clear()


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m tests.slurm_cluster FOLDER")
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"error: {reason}")
    cluster = SlurmCluster(Path(argv[0]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID` stops the cluster too
    cluster.start()
    print(
        f"node {cluster.hostname} idle in partition debug; in another shell:\n"
        f"  export SLURM_CONF={cluster.conf} PATH={cluster.root / 'bin'}:$PATH\n"
        "Ctrl-C (or kill) stops the cluster.",
        flush=True,
    )
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
