"""A new user's first session with kazoo (Python) through zkgate: CRUD, an ephemeral,
a watch that fires once, a transaction with a failing op, digest auth. Prints one line per
step; exits non-zero on the first surprise. Usage: python3 kazoo_smoke.py HOST:PORT ROOT"""
import sys
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoAuthError, NoNodeError
from kazoo.security import make_digest_acl

hosts, root = sys.argv[1], sys.argv[2]
zk = KazooClient(hosts=hosts, timeout=10.0)
zk.start(timeout=15)
print("connected session=0x%x" % zk.client_id[0])

zk.create(root, b"hello")
data, stat = zk.get(root)
assert data == b"hello", data
print("get", data.decode(), "version", stat.version)

zk.set(root, b"world", version=stat.version)
try:
    zk.set(root, b"stale", version=stat.version)
    raise SystemExit("stale set succeeded")
except BadVersionError:
    print("badversion ok")

eph = zk.create(root + "/eph-", b"e", ephemeral=True, sequence=True)
print("ephemeral", eph)

fired = []
event = threading.Event()

def watcher(ev):
    fired.append(ev)
    event.set()

zk.get(root, watch=watcher)
zk.set(root, b"changed")
assert event.wait(10), "watch did not fire"
zk.set(root, b"again")
zk.sync(root)
assert len(fired) == 1, fired
print("watch fired once", fired[0].type)

tx = zk.transaction()
tx.create(root + "/t1", b"1")
tx.check(root, 99)
results = tx.commit()
assert isinstance(results[1], BadVersionError), results
assert not zk.exists(root + "/t1")
print("transaction rolled back", [type(r).__name__ for r in results])

zk.add_auth("digest", "alice:secret")
zk.create(root + "/private", b"s", acl=[make_digest_acl("alice", "secret", all=True)])
other = KazooClient(hosts=hosts, timeout=10.0)
other.start(timeout=15)
try:
    other.get(root + "/private")
    raise SystemExit("read without auth succeeded")
except NoAuthError:
    print("acl enforced")
other.stop()
other.close()

children = sorted(zk.get_children(root))
print("children", children)
zk.delete(root, recursive=True)
try:
    zk.get(root)
    raise SystemExit("deleted node still there")
except NoNodeError:
    print("deleted")
zk.stop()
zk.close()
print("OK")
