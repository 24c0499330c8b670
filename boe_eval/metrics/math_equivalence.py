"""Mathematical equivalence of two answers with math-verify, under a deadline enforced here.

math-verify's own timeouts use `signal.alarm`, which raises off the main thread, so they are
switched off (`parsing_timeout=None`, `timeout_seconds=None`) and every comparison runs in a
long-lived child process instead. A comparison that misses its deadline (sympy can run for ever,
e.g. on `9^{9^{9^{9}}}`) kills the child and counts as "not equal"; the next call starts a fresh one.
The child also has an address-space limit, so a runaway expansion fails instead of swapping.

    verifier = MathVerifier(timeout_s=5)
    verifier.equal("\\frac{1}{2}", "0.5")        # True
    answers_equal("\\frac{1}{2}", "0.5")          # same, with a shared verifier
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from boe_eval.errors import ConfigError

DEFAULT_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 180.0
WORKER_ADDRESS_SPACE_BYTES = 4 * 2**30
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
log = logging.getLogger(__name__)


def plain_form(answer: str) -> str:
    """The answer with whitespace, `$`, `\\left`/`\\right` and LaTeX spacing commands removed and
    `\\dfrac`/`\\tfrac` written `\\frac`: two answers with the same plain form are the same text."""
    text = re.sub(r"\\left|\\right|\\[,;:! ]|\$|\s+", "", answer)
    return text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


# ---------------------------------------------------------------------------------- child side
def compare_in_process(gold: str, prediction: str, extract: bool) -> bool:
    """math-verify, timeouts off. `gold` is a bare answer (parsed as `\\boxed{gold}`); `prediction`
    is a bare answer too, or with `extract=True` a whole response that math-verify searches for
    its final answer. Identical plain forms count as equal when math-verify cannot parse them."""
    from math_verify import parse, verify

    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    pred_parsed = parse(prediction if extract else f"\\boxed{{{prediction}}}", parsing_timeout=None)
    if gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return True
    return not extract and bool(plain_form(gold)) and plain_form(gold) == plain_form(prediction)


def serve(address_space_bytes: int = WORKER_ADDRESS_SPACE_BYTES) -> None:
    """Child loop: one JSON request per stdin line, answers `1` / `0` (or `E` on an error) per line."""
    import resource

    if address_space_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import before announcing readiness)

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            verdict = "1" if compare_in_process(request["gold"], request["prediction"], request["extract"]) else "0"
        except Exception:  # noqa: BLE001  (a malformed or unparsable answer is "not equal")
            verdict = "E"
        out.write(verdict + "\n")
        out.flush()


# --------------------------------------------------------------------------------- parent side
class MathVerifier:
    """Compares answers in a child process; each comparison has `timeout_s` seconds."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s={timeout_s!r} is invalid: it must be a positive number of seconds")
        self.timeout_s = float(timeout_s)
        self.startup_timeout_s = float(startup_timeout_s)
        self.timeouts = 0  #: comparisons that missed their deadline
        self.errors = 0  #: comparisons math-verify raised on
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._lock = threading.Lock()

    def equal(self, gold: str, prediction: str | None, extract: bool = False) -> bool:
        """Whether `prediction` (a bare answer, or a whole response with `extract=True`) is
        mathematically equal to the bare answer `gold`. False on timeout, error or no prediction."""
        if prediction is None or not str(prediction).strip() or not str(gold).strip():
            return False
        request = json.dumps({"gold": str(gold), "prediction": str(prediction), "extract": bool(extract)}) + "\n"
        with self._lock:
            for attempt in range(2):
                self._ensure_started()
                try:
                    assert self._proc is not None and self._proc.stdin is not None
                    self._proc.stdin.write(request.encode())
                    self._proc.stdin.flush()
                    line = self._read_line(time.monotonic() + self.timeout_s)
                except (BrokenPipeError, EOFError):
                    self._kill()  # the child died (e.g. out of memory): retry once in a fresh one
                    if attempt == 0:
                        continue
                    self.errors += 1
                    return False
                if line is None:
                    self.timeouts += 1
                    log.warning("math-verify exceeded %.1f s comparing %.80r with %.80r: scored 0", self.timeout_s, gold, prediction)
                    self._kill()
                    return False
                if line == b"E":
                    self.errors += 1
                return line == b"1"
        return False

    def close(self) -> None:
        with self._lock:
            self._kill()

    # -------------------------------------------------------------------------------- internals
    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._kill()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from boe_eval.metrics.math_equivalence import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buffer = b""
        try:
            ready = self._read_line(time.monotonic() + self.startup_timeout_s)
        except EOFError:
            self._kill()
            raise RuntimeError(
                "the math-verify worker exited at start: `python -c 'import math_verify'` shows why "
                "(install math-verify[antlr4_9_3])"
            ) from None
        if ready != b"ready":
            self._kill()
            raise RuntimeError(f"the math-verify worker did not start within {self.startup_timeout_s:.0f} s")

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the child, or None once `deadline` passes; EOFError if the child exited."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math-verify worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.strip()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        self._buffer = b""
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


_shared: MathVerifier | None = None
_shared_lock = threading.Lock()


def shared_verifier() -> MathVerifier:
    """The process-wide verifier used by the task metrics (closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MathVerifier()
            atexit.register(_shared.close)
        return _shared


def answers_equal(gold: str, prediction: str | None) -> bool:
    """`MathVerifier.equal` of bare answers with the shared verifier."""
    return shared_verifier().equal(gold, prediction)


def response_matches(gold: str, response: str) -> bool:
    """Whether math-verify's own answer extraction from a whole response equals `gold`."""
    return shared_verifier().equal(gold, response, extract=True)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MathVerifier",
    "answers_equal",
    "compare_in_process",
    "plain_form",
    "response_matches",
    "serve",
    "shared_verifier",
]
