# Runs inside the provisioner: try each door, print and record what was read (the test searches for secrets).
import json
import os
import socket
import struct

targets = os.environ.get("ATTACK_TARGETS") or "{}"
if targets.startswith("@"):  # a file, written by the test once the app has started (ports are chosen then)
    with open(targets[1:]) as f:
        targets = f.read()
targets = json.loads(targets)
got = {"uid": os.getuid(), "env": dict(os.environ)}


def attempt(name, fn):
    try:
        got[name] = {"ok": True, "value": fn()}
    except Exception as e:  # noqa: BLE001 - every failure is a shut door
        got[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


own = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if os.stat(f"/proc/{pid}").st_uid == os.getuid():
                own.append(f"/proc/{pid}/environ")  # the run's own processes: Terraform, this script
        except OSError:
            continue
        for part in ("environ", "cmdline"):
            attempt(f"/proc/{pid}/{part}", lambda p=f"/proc/{pid}/{part}": read(p))
got["own"] = own
for path in targets.get("files", []):
    attempt(path, lambda p=path: read(p))
for path in targets.get("dirs", []):
    attempt(path, lambda p=path: os.listdir(p))


def startup(user):  # a PostgreSQL startup message: trust authentication answers 'R' + 0 (AuthenticationOk)
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0postgres\0\0"
    return struct.pack("!I", len(body) + 4) + body


def pg(family, address, user):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(address)
        s.sendall(startup(user))
        answer = s.recv(64)
        if answer[:1] == b"R" and answer[5:9] == b"\0\0\0\0":
            return "AUTHENTICATED as " + user
        raise PermissionError(f"refused: {answer[:1]!r}")


for path in targets.get("sockets", []):
    for user in ("postgres", "ghapp"):
        attempt(f"{path} as {user}", lambda p=path, u=user: pg(socket.AF_UNIX, p, u))
for host, port in targets.get("tcp", []):
    for user in ("postgres", "ghapp"):
        attempt(f"{host}:{port} as {user}", lambda h=host, p=port, u=user: pg(socket.AF_INET, (h, p), u))


def with_state_role(statement):  # PG_CONN_STR is for Terraform's states: try the app's tables and roles with it
    import asyncio

    import asyncpg  # the interpreter Terraform runs with is ghapp's, which has it

    async def go():
        conn = await asyncpg.connect(os.environ["PG_CONN_STR"], timeout=3)
        try:
            return str(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(go())


if os.environ.get("PG_CONN_STR"):
    got["PG_CONN_STR states"] = {"ok": True, "value": "skipped"}
    attempt("PG_CONN_STR states", lambda: with_state_role("SELECT name FROM terraform_remote_state.states"))
    for statement in (
        "SELECT * FROM environments",
        "SELECT * FROM state_role",
        "INSERT INTO deliveries (id, event) VALUES ('forged', 'push')",
        "CREATE ROLE intruder LOGIN SUPERUSER",
        "CREATE TABLE intruder (x int)",
    ):
        attempt(f"PG_CONN_STR {statement}", lambda s=statement: with_state_role(s))

opened = sorted(k for k, v in got.items() if isinstance(v, dict) and v.get("ok") and k not in ("env", *own))
print("ATTACK opened:", json.dumps(opened)[:2000])
print("ATTACK env:", json.dumps(got["env"]))
if os.environ.get("ATTACK_REPORT"):
    with open(os.environ["ATTACK_REPORT"], "w") as f:
        json.dump(got, f)
