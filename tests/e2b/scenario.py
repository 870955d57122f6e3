"""E2B Python SDK scenario against corral (unmodified SDK; env: E2B_API_URL,
E2B_SANDBOX_URL, E2B_API_KEY, E2B_DOMAIN). Prints OK lines; exits non-zero on failure."""
import os
import sys
import time
import uuid

from e2b import Sandbox, SandboxQuery
from e2b.exceptions import (
    AuthenticationException,
    NotFoundException,
    SandboxException,
)
from e2b.sandbox.commands.command_handle import CommandExitException

tag = uuid.uuid4().hex[:8]

sbx = Sandbox.create(metadata={"suite": "e2b", "tag": tag}, timeout=120)
print("OK create", sbx.sandbox_id)

r = sbx.commands.run("echo hello; echo oops >&2")
assert r.stdout == "hello\n", repr(r.stdout)
assert r.stderr == "oops\n", repr(r.stderr)
assert r.exit_code == 0
print("OK run")

try:
    sbx.commands.run("exit 3")
    raise AssertionError("exit 3 did not raise")
except CommandExitException as e:
    assert e.exit_code == 3, e.exit_code
print("OK exit exception")

# streamed output arrives while the command runs
seen = []
t0 = time.monotonic()
sbx.commands.run(
    "echo first; sleep 1; echo second",
    on_stdout=lambda line: seen.append((time.monotonic() - t0, line)),
)
assert [l.strip() for _, l in seen] == ["first", "second"], seen
assert seen[0][0] < 0.8, f"first line came late: {seen}"
print("OK streaming", [round(t, 2) for t, _ in seen])

# background command listed and killed
h = sbx.commands.run("sleep 60", background=True)
pids = [p.pid for p in sbx.commands.list()]
assert h.pid in pids, (h.pid, pids)
assert sbx.commands.kill(h.pid)
for _ in range(50):
    if h.pid not in [p.pid for p in sbx.commands.list()]:
        break
    time.sleep(0.05)
assert h.pid not in [p.pid for p in sbx.commands.list()]
print("OK background")

# files
info = sbx.files.write("/tmp/hello.txt", "hi there")
assert sbx.files.read("/tmp/hello.txt") == "hi there"
sbx.files.write_files([{"path": "/tmp/d/a.txt", "data": "A"}, {"path": "/tmp/d/b.txt", "data": b"B"}]) if sbx.files.make_dir("/tmp/d") else None
names = sorted(e.name for e in sbx.files.list("/tmp/d"))
assert names == ["a.txt", "b.txt"], names
assert sbx.files.exists("/tmp/hello.txt")
assert not sbx.files.exists("/tmp/nope")
sbx.files.rename("/tmp/hello.txt", "/tmp/hello2.txt")
assert sbx.files.get_info("/tmp/hello2.txt").size == 8
sbx.files.remove("/tmp/hello2.txt")
assert not sbx.files.exists("/tmp/hello2.txt")
print("OK files")

events = []
w = sbx.files.watch_dir("/tmp/d")
sbx.files.write("/tmp/d/c.txt", "C")
for _ in range(40):
    events += w.get_new_events()
    if any(e.name == "c.txt" for e in events):
        break
    time.sleep(0.05)
w.stop()
assert any(e.name == "c.txt" for e in events), events
print("OK watch")

# list by metadata
found = Sandbox.list(query=SandboxQuery(metadata={"tag": tag})).next_items()
assert [s.sandbox_id for s in found] == [sbx.sandbox_id], found
print("OK list")

sbx.set_timeout(200)
print("OK timeout")

# bad input
try:
    Sandbox.create(api_key="crl_wrong")
    raise AssertionError("wrong key accepted")
except AuthenticationException:
    print("OK wrong key")
try:
    Sandbox.connect("sb-00000000000000000000")
    raise AssertionError("unknown sandbox connected")
except (NotFoundException, SandboxException) as e:
    print("OK unknown id", type(e).__name__)

sbx.kill()
assert not Sandbox.list(query=SandboxQuery(metadata={"tag": tag})).next_items()
try:
    sbx.commands.run("true")
    raise AssertionError("command ran in a killed sandbox")
except SandboxException as e:
    print("OK killed", type(e).__name__)
print("SCENARIO PASSED")
