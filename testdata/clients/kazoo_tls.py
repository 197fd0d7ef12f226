"""kazoo through zkgate, over TLS when a CA is given: CRUD, an ephemeral, a watch that
fires once. Prints one line per step and OK at the end.
Usage: python3 kazoo_tls.py HOST:PORT ROOT [CA [CERT KEY]]"""
import sys
import threading

from kazoo.client import KazooClient

hosts, root = sys.argv[1], sys.argv[2]
ca = sys.argv[3] if len(sys.argv) > 3 else None
cert = sys.argv[4] if len(sys.argv) > 4 else None
key = sys.argv[5] if len(sys.argv) > 5 else None
kw = {}
if ca:
    kw = dict(use_ssl=True, verify_certs=True, ca=ca, certfile=cert, keyfile=key)
zk = KazooClient(hosts=hosts, timeout=10.0, **kw)
zk.start(timeout=20)
print("connected tls=%s session=0x%x" % (bool(ca), zk.client_id[0]), flush=True)
zk.create(root, b"v1")
fired = threading.Event()
zk.get(root, watch=lambda ev: fired.set())
zk.set(root, b"v2")
assert fired.wait(10), "watch did not fire"
print("watch fired", flush=True)
eph = zk.create(root + "/eph", b"e", ephemeral=True)
assert zk.exists(eph) and zk.exists(eph).ephemeralOwner == zk.client_id[0]
print("ephemeral", eph, flush=True)
data, _ = zk.get(root)
assert data == b"v2", data
zk.delete(eph)
zk.delete(root)
zk.stop()
print("OK", flush=True)
