"""What the process tests of the bundled tools share (tests/tools/echo_test.py,
tests/proxy/proxy_test.py): byte patterns, a tool process with its output, summary and CPU
time, certificates made with the openssl CLI, and the out-of-file-descriptors check."""

import atexit
import json
import os
import random
import re
import signal
import subprocess
import tempfile
import time

TIMEOUT = 20  # seconds any single socket operation of a test may take


def pattern(n, seed):
    return random.Random(seed).randbytes(n)


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        d = s.recv(min(65536, n - len(out)))
        if not d:
            raise EOFError(f"end of stream after {len(out)} of {n} bytes")
        out += d
    return bytes(out)


RUNNING = []  # every tool process started, killed at exit if still running (a failed assertion)


def kill_leftovers():
    for proc in RUNNING:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(kill_leftovers)


class ToolProcess:
    """A tool started with `cmd`, its stdout and stderr kept in files."""

    def __init__(self, cmd):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=self.err)
        RUNNING.append(self.p)

    def output(self):
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read().decode() + self.err.read().decode()

    def stop(self):
        """SIGTERM, wait, return (exit code, output)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=TIMEOUT)
        return rc, self.output()

    def summary(self):
        """stop(); returns (the JSON summary line's object, the whole output)."""
        rc, out = self.stop()
        assert rc == 0, f"exit {rc}: {out}"
        m = re.search(r"summary (\{.*\})", out)
        assert m, f"no summary: {out}"
        return json.loads(m.group(1)), out

    def cpu_seconds(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d, name, cn):
    """A self-signed ECDSA P-256 CA: {d}/{name}.pem and {d}/{name}.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.pem", "-days", "2", "-subj", f"/CN={cn}")


def make_leaf(d, name, cn, san, ca="ca"):
    """A leaf {d}/{name}.pem, {d}/{name}.key for `cn` with subjectAltName `san`, signed by
    {d}/{ca}.pem."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={cn}")
    ext = f"{d}/{name}.cnf"
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.pem", "-CAkey", f"{d}/{ca}.key",
            "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", ext)


def check_backoff_at_fd_limit(tool, connect, what):
    """With the tool under a low RLIMIT_NOFILE: 40 clients each send a byte; some are served
    and the rest wait, while the tool backs off (under 5 % CPU over 1.5 s: the proxy's issue
    asks for that; both tools measure under 1 %). Closes them and returns (connections served,
    CPU share). Only plain builds run it: the sanitizer legs of CI (tools/dev.sh test-asan,
    test-tsan) build without the tools."""
    held = []
    for _ in range(40):
        s = connect()
        s.sendall(b"x")
        held.append(s)
    time.sleep(1.0)
    served = 0
    for s in held:
        s.settimeout(0.2)
        try:
            if s.recv(1) == b"x":
                served += 1
        except OSError:
            pass
    cpu0 = tool.cpu_seconds()
    t0 = time.time()
    time.sleep(1.5)
    cpu = (tool.cpu_seconds() - cpu0) / (time.time() - t0)
    assert 0 < served < 40, f"{served} of 40 held connections served: the limit was not reached"
    assert cpu < 0.05, f"{what} used {cpu:.1%} CPU while out of fds (a spin?)"
    for s in held:
        s.close()
    return served, cpu
