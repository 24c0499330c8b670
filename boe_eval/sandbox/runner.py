"""The two programs that run inside the sandbox, each in its own process and uid (stdlib only: the
bootstrap copies this file into the sandbox and starts it as `python -I -B runner.py ROLE FD...`).

- `candidate FD`: runs the model-written program (`main.py` in its working directory), then answers
  calls from the checker over the socket FD: `{"call": target, "args": [...], "kwargs": [...]}`
  -> `{"value": v}` or `{"raised": "TypeName"}`. It holds no other descriptor of the harness.
- `checker FD STATUS_FD NAMES`: waits for the candidate to announce its top-level names, binds each to a
  proxy (a call crosses to the candidate's process, the result comes back as plain data), runs the
  tests (`tests.py` in its own working directory, which the candidate's uid cannot read) and writes
  the verdict on STATUS_FD: `passed`, `failed <TypeName>` or `candidate-raised <TypeName>`.

Values cross as tagged JSON (`encode` / `decode`): None, bool, int, float, str, bytes, complex,
list, tuple, dict, set and frozenset of exactly those types (subclasses are not plain data), and
the standard library's Counter, OrderedDict, defaultdict (its factory stays behind), deque,
Fraction and Decimal, which the checker rebuilds as genuine objects of those types; any
other object stays in the process that made it and crosses as an opaque reference, so an object
whose `__eq__` is always True, or an int subclass, never reaches the checker's comparisons, and
`sys.settrace` or monkey-patching in the candidate's process cannot touch the checker's. This is the
EvalPlus idea (compare outputs as values outside the candidate's process) applied to the tasks' own
tests, so every assertion keeps the reference evaluators' semantics.
"""

from __future__ import annotations

import builtins
import collections
import json
import os
import struct
import sys
import traceback

MAX_MESSAGE = 64 << 20  #: bytes; a larger message is a protocol error
_HEADER = struct.Struct(">I")
_PLAIN_SCALARS = (type(None), bool, int, float, str)


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


class CandidateGone(Exception):
    """The candidate's process ended (or closed its socket) before it answered."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one (its type name is the message)."""


# ------------------------------------------------------------------------------------------- codec
def encode(value, references: dict | None = None, depth: int = 0):
    """Plain data -> JSON-able tagged form. Non-plain objects become `{"ref": n}` when a table of
    `references` is given (the candidate keeps them), else raise TypeError."""
    if depth > 200:
        raise ValueError("nesting deeper than 200")
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is list:
        return [encode(v, references, depth + 1) for v in value]
    if kind is tuple:
        return {"tuple": [encode(v, references, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, references, depth + 1), encode(v, references, depth + 1)] for k, v in value.items()]}
    if kind in (set, frozenset):
        return {kind.__name__: [encode(v, references, depth + 1) for v in value]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    if kind in (collections.Counter, collections.OrderedDict, collections.defaultdict):
        return {kind.__name__: encode(dict(value), references, depth + 1)}
    if kind is collections.deque:
        return {"deque": encode(list(value), references, depth + 1)}
    fractions, decimal = sys.modules.get("fractions"), sys.modules.get("decimal")  # loaded if in use
    if fractions is not None and kind is fractions.Fraction:
        return {"Fraction": [value.numerator, value.denominator]}
    if decimal is not None and kind is decimal.Decimal:
        return {"Decimal": str(value)}
    if isinstance(value, RemoteObject):
        return {"ref": value.ref}
    if isinstance(value, Proxy):
        return {"global": value.name}
    if references is None:
        raise TypeError(f"{kind.__name__} is not plain data")
    ref = len(references)
    references[ref] = value
    return {"ref": ref}


def decode(data, resolve=None):
    """Inverse of `encode`; `resolve(tag, key)` turns `ref` / `global` tags into objects."""
    kind = type(data)
    if kind in _PLAIN_SCALARS:
        return data
    if kind is list:
        return [decode(v, resolve) for v in data]
    if kind is not dict or len(data) != 1:
        raise ProtocolError(f"not a tagged value: {str(data)[:80]}")
    (tag, body), = data.items()
    try:
        if tag == "tuple":
            return tuple(decode(v, resolve) for v in body)
        if tag == "dict":
            return {decode(k, resolve): decode(v, resolve) for k, v in body}
        if tag in ("set", "frozenset"):
            return (set if tag == "set" else frozenset)(decode(v, resolve) for v in body)
        if tag == "bytes":
            return bytes.fromhex(body)
        if tag == "complex":
            real, imag = body
            if type(real) is not float or type(imag) is not float:
                raise ProtocolError("complex parts must be floats")
            return complex(real, imag)
        if tag in ("Counter", "OrderedDict", "defaultdict", "deque"):
            inner = decode(body, resolve)
            expected = list if tag == "deque" else dict
            if type(inner) is not expected:
                raise ProtocolError(f"{tag} of {type(inner).__name__}")
            if tag == "defaultdict":
                return collections.defaultdict(None, inner)
            return getattr(collections, tag)(inner)
        if tag == "Fraction":
            import fractions

            numerator, denominator = body
            if type(numerator) is not int or type(denominator) is not int:
                raise ProtocolError("Fraction parts must be ints")
            return fractions.Fraction(numerator, denominator)
        if tag == "Decimal":
            if type(body) is not str:
                raise ProtocolError("Decimal must be a string")
            import decimal

            return decimal.Decimal(body)
        if tag in ("ref", "global") and resolve is not None:
            return resolve(tag, body)
    except ProtocolError:
        raise
    except Exception as exc:  # unhashable keys, bad hex, wrong shapes
        raise ProtocolError(f"malformed {tag}: {type(exc).__name__}") from None
    raise ProtocolError(f"unknown tag {tag[:40]!r}")


def send(fd: int, message) -> None:
    data = json.dumps(message, allow_nan=True).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise CandidateGone("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int):
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes (limit {MAX_MESSAGE})")
    try:
        return json.loads(_read_exactly(fd, size))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {type(exc).__name__}") from None


# ------------------------------------------------------------------------------------------- candidate
def _announce(namespace: dict, references: dict) -> list:
    """[name, kind, payload] for each top-level name: callable, module, value (plain) or ref."""
    names = []
    for name, value in list(namespace.items()):
        if not isinstance(name, str) or name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            names.append([name, "module", None])
        elif callable(value):
            names.append([name, "callable", None])
        else:
            try:
                names.append([name, "value", encode(value)])
            except (TypeError, ValueError, RecursionError):
                names.append([name, "ref", encode(value, references)])
    return names


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def serve_candidate(sock: int, module_name: str) -> None:
    """Run main.py, announce its names, answer calls until the checker hangs up."""
    with open("main.py", encoding="utf-8") as fh:
        source = fh.read()
    sys.argv = ["main.py"]
    namespace = {"__name__": module_name, "__builtins__": builtins, "__file__": "main.py"}
    try:
        exec(compile(source, "main.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # the program's frames
        finally:
            _flush()
            send(sock, {"raised": type(exc).__name__})
            os._exit(1)
    references: dict = {}

    def resolve(tag, key):
        try:
            return namespace[key] if tag == "global" else references[key]
        except (KeyError, TypeError):
            raise ProtocolError(f"unknown {tag} {key!r}") from None

    _flush()
    send(sock, {"ready": _announce(namespace, references)})
    while True:
        try:
            request = receive(sock)
        except CandidateGone:
            _flush()
            os._exit(0)
        try:
            function = decode(request["call"], resolve)
            args = decode(request["args"], resolve)
            kwargs = dict(decode(request["kwargs"], resolve))
            reply = {"value": encode(function(*args, **kwargs), references)}
        except BaseException as exc:  # noqa: BLE001 - every outcome of the call goes back as data
            reply = {"raised": type(exc).__name__}
        _flush()
        try:
            send(sock, reply)
        except (TypeError, ValueError, RecursionError):  # e.g. a float subclass slipping into json
            send(sock, {"raised": "TypeError"})


# ------------------------------------------------------------------------------------------- checker
class RemoteObject:
    """An object that lives in the candidate's process: it can be passed back to the candidate's
    functions, and compares equal only to itself."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref

    def __repr__(self) -> str:
        return f"<candidate object {self.ref}>"


class Proxy:
    """A callable of the candidate's program: arguments go over as plain data, the result comes
    back as plain data (or a RemoteObject), an exception as the built-in type it had."""

    __slots__ = ("name", "_channel")

    def __init__(self, name: str, channel: "_Channel"):
        self.name, self._channel = name, channel

    def __call__(self, *args, **kwargs):
        return self._channel.call({"global": self.name}, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.name}>"


class _Channel:
    def __init__(self, sock: int):
        self.sock = sock

    def _resolve(self, tag, key):
        if tag == "ref" and type(key) is int:
            return RemoteObject(key)
        if tag == "global" and type(key) is str:
            return Proxy(key, self)
        raise ProtocolError(f"bad {tag} {str(key)[:40]!r}")

    def call(self, target, args, kwargs):
        send(self.sock, {"call": target, "args": encode(list(args)), "kwargs": encode(list(kwargs.items()))})
        reply = receive(self.sock)
        if type(reply) is not dict or len(reply) != 1:
            raise ProtocolError("malformed reply")
        if "value" in reply:
            return decode(reply["value"], self._resolve)
        name = reply.get("raised")
        if type(name) is not str:
            raise ProtocolError("malformed reply")
        kind = getattr(builtins, name, None) if name.isidentifier() else None
        if isinstance(kind, type) and issubclass(kind, BaseException) and kind is not BaseException:
            try:
                error = kind("raised in the candidate's process")
            except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError wants five arguments
                error = CandidateError(name)
            raise error
        raise CandidateError(name[:100])


def _bind(announced, channel: _Channel, may_shadow: set[str]) -> dict:
    """The checker's view of the candidate's top-level names. Names of built-ins are not rebound
    (a program cannot replace `abs` or `sorted` under the tests) unless the task's own function has
    that name (`may_shadow`, e.g. MBPP's `sum`)."""
    namespace = {}
    stdlib = getattr(sys, "stdlib_module_names", ())
    if type(announced) is not list:
        raise ProtocolError("malformed announcement")
    for entry in announced:
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
            raise ProtocolError("malformed announcement")
        name, kind, payload = entry
        if not name.isidentifier() or name.startswith("__") or (hasattr(builtins, name) and name not in may_shadow):
            continue
        if kind == "callable":
            namespace[name] = Proxy(name, channel)
        elif kind == "module" and name in stdlib:
            import importlib

            try:
                namespace[name] = importlib.import_module(name)
            except ImportError:
                pass
        elif kind == "value":
            namespace[name] = decode(payload)
        elif kind == "ref":
            namespace[name] = decode(payload, channel._resolve)
    return namespace


def _status(fd: int, line: str) -> None:
    os.write(fd, (line.replace("\n", " ") + "\n").encode())


def run_checker(sock: int, status_fd: int, module_name: str, may_shadow: set[str]) -> None:
    with open("tests.py", encoding="utf-8") as fh:
        tests = fh.read()
    channel = _Channel(sock)
    try:
        hello = receive(sock)
        if type(hello) is not dict or len(hello) != 1:
            raise ProtocolError("malformed greeting")
        if "raised" in hello:
            _status(status_fd, f"candidate-raised {str(hello['raised'])[:100]}")
            os._exit(1)
        if "ready" not in hello:
            raise ProtocolError("malformed greeting")
        namespace = _bind(hello["ready"], channel, may_shadow)
    except (CandidateGone, ProtocolError) as exc:
        _status(status_fd, f"failed {type(exc).__name__}")
        print(f"checker: {exc}", file=sys.stderr)
        _flush()
        os._exit(1)
    namespace.update({"__name__": module_name, "__builtins__": builtins, "__file__": "tests.py"})
    try:
        exec(compile(tests, "tests.py", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001
        _status(status_fd, f"failed {type(exc).__name__}")
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        finally:
            _flush()
            os._exit(1)
    _flush()
    _status(status_fd, "passed")
    os._exit(0)


def main(argv: list[str]) -> None:
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big ints cross as JSON numbers
    role, module_name = argv[1], argv[2]
    if role == "candidate":
        serve_candidate(int(argv[3]), module_name)
    elif role == "checker":
        run_checker(int(argv[3]), int(argv[4]), module_name, set(json.loads(argv[5])))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv)
