"""kazoo with read_only=True through zkgate while the ensemble has no quorum: connects
read-only, reads, is refused a write; then, once the quorum is back, finds the read-write
service through zkgate (kazoo polls isro on its hosts) and writes. Prints one line per
step and OK at the end. Usage: python3 kazoo_readonly.py HOST:PORT PATH"""
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState


def wait_state(zk, want, within):
    deadline = time.time() + within
    while zk.client_state != want:
        if time.time() > deadline:
            raise SystemExit("state %s, want %s after %ss" % (zk.client_state, want, within))
        time.sleep(0.05)


hosts, path = sys.argv[1], sys.argv[2]
zk = KazooClient(hosts=hosts, timeout=6.0, read_only=True)
zk.start(timeout=30)
wait_state(zk, KeeperState.CONNECTED_RO, 30)
print("connected read-only session=0x%x" % zk.client_id[0], flush=True)
data, _ = zk.get(path)
print("read-only get", data.decode(), flush=True)
try:
    zk.create(path + "/kazoo-ro", b"x")
    raise SystemExit("a write succeeded on a read-only connection")
except NotReadOnlyCallError:
    print("read-only write refused", flush=True)
wait_state(zk, KeeperState.CONNECTED, 120)
print("read-write again session=0x%x" % zk.client_id[0], flush=True)
zk.create(path + "/kazoo-rw", b"x")
print("read-write create ok", flush=True)
zk.stop()
print("OK", flush=True)
